"""Calibrated glacier probabilities: temperature scaling (Guo et al. 2017) fitted on the
validation glaciers, and the expected calibration error with its reliability table.

A U-Net trained with BCE and Dice is over-confident; one temperature T, chosen so that
sigmoid(logit / T) has the least log loss on glaciers the model did not train on, brings its
probabilities nearer to observed frequencies without moving the 0.5 boundary: the mask,
and every tool that thresholds the probability at 0.5 (evaluate, area change), stays where
the network put it. A bias term (Platt scaling) would also remove the network's lean to or
from glacier, but it moves the 0.5 boundary; the lean is measured and reported instead
("lean": mean probability minus glacier share on the validation pixels).
"""
from __future__ import annotations

import numpy as np

BINS = 15
PIXELS_PER_PATCH = 4096  # a seeded sample: memory bounded however many validation patches


def sample_pixels(logits: np.ndarray, target: np.ndarray, valid: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """Up to PIXELS_PER_PATCH valid (logit, label) pairs of one patch."""
    where = np.flatnonzero(valid.ravel())
    if where.size > PIXELS_PER_PATCH:
        where = rng.choice(where, PIXELS_PER_PATCH, replace=False)
    return logits.ravel()[where].astype(np.float64), target.ravel()[where].astype(np.float64)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature with the least log loss, searched on log T in [0.05, 20] (bounded
    scalar minimisation: the loss is convex in 1/T)."""
    from scipy.optimize import minimize_scalar
    if logits.size == 0 or labels.min() == labels.max():
        return 1.0  # one class only: nothing to calibrate against

    def loss(u):
        z = logits / np.exp(u)
        return float(np.mean(np.logaddexp(0.0, z) - labels * z))  # the stable binary log loss
    best = minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(best.x))


def reliability(prob: np.ndarray, labels: np.ndarray, bins: int = BINS) -> list[dict]:
    """Per probability bin: its range, pixel count, mean predicted probability and the
    observed share of glacier pixels (the reliability diagram as a table)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(prob, edges[1:-1]), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    mean_p = np.bincount(which, weights=prob, minlength=bins) / np.maximum(count, 1)
    observed = np.bincount(which, weights=labels, minlength=bins) / np.maximum(count, 1)
    return [{"bin_low": round(float(edges[i]), 4), "bin_high": round(float(edges[i + 1]), 4), "pixels": int(count[i]),
             "mean_probability": float(mean_p[i]) if count[i] else None,
             "glacier_share": float(observed[i]) if count[i] else None} for i in range(bins)]


def expected_calibration_error(prob: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Pixel-weighted mean |predicted - observed| over the bins."""
    table = reliability(prob, labels, bins)
    n = sum(r["pixels"] for r in table)
    if not n:
        return float("nan")
    return float(sum(r["pixels"] * abs(r["mean_probability"] - r["glacier_share"]) for r in table if r["pixels"]) / n)


def calibrate(logits: np.ndarray, labels: np.ndarray) -> dict:
    """Temperature, ECE before and after, the lean, and the reliability tables before and after."""
    t = fit_temperature(logits, labels)
    before = 1.0 / (1.0 + np.exp(-logits))
    after = 1.0 / (1.0 + np.exp(-logits / t))
    return {"temperature": round(t, 4), "ece_before": expected_calibration_error(before, labels),
            "ece": expected_calibration_error(after, labels),
            "lean": float(after.mean() - labels.mean()) if labels.size else float("nan"),
            "pixels": int(labels.size), "reliability": reliability(after, labels),
            "reliability_before": reliability(before, labels)}
