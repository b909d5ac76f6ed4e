"""Binary segmentation metrics from confusion counts (the paper's Table 1 columns)."""
from __future__ import annotations

import numpy as np


def confusion(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> dict:
    """tp, fp, fn, tn over the valid pixels."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if valid is None:
        valid = np.ones(pred.shape, bool)
    p, t = pred[valid], truth[valid]
    return {"tp": int(np.sum(p & t)), "fp": int(np.sum(p & ~t)),
            "fn": int(np.sum(~p & t)), "tn": int(np.sum(~p & ~t))}


def add(a: dict, b: dict) -> dict:
    return {k: a.get(k, 0) + b.get(k, 0) for k in ("tp", "fp", "fn", "tn")}


def _ratio(num, den):
    return float(num) / den if den else float("nan")


def scores(c: dict) -> dict:
    """accuracy, IoU, precision, recall, F1 (NaN where undefined)."""
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {"accuracy": _ratio(tp + tn, tp + fp + fn + tn), "iou": _ratio(tp, tp + fp + fn),
            "precision": precision, "recall": recall, "f1": _ratio(2 * tp, 2 * tp + fp + fn)}


METRICS = ("accuracy", "iou", "precision", "recall", "f1")


def mean_std(rows: list[dict]) -> tuple[dict, dict]:
    """Mean and sample std of each metric over rows (NaNs ignored)."""
    mean, std = {}, {}
    for m in METRICS:
        vals = np.array([r[m] for r in rows], float)
        vals = vals[np.isfinite(vals)]
        mean[m] = float(vals.mean()) if vals.size else float("nan")
        std[m] = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
    return mean, std
