"""Per-pixel weights of the training loss (WEIGHTING), from issue 26 item 7's ablations.

dark: glacier pixels darker than the darkest third of the training glacier pixels (visible
  bands' mean: debris-covered tongues and shaded ice, the pixels a U-Net misses first)
  weighted DARK_WEIGHT times; the level is measured on a seeded sample of the training
  patches only, so it is reproducible and validation pixels play no part.

Class balance (glacier and other pixels weighted by the inverse of their share) was tried
and dropped: on everest_west it cost 0.045 IoU, worse on every seed (docs/benchmarks.md);
the Dice term already counts missed and added glacier pixels alike.
"""
from __future__ import annotations

import numpy as np

from .baseline import VISIBLE

WEIGHTINGS = ("dark",)
DARK_WEIGHT = 2.0
DARK_QUANTILE = 1 / 3
PATCHES = 200  # sampled training patches: enough for one quantile


def parse(text) -> tuple[str, ...]:
    names = [w.strip().lower() for w in str(text or "").replace(";", ",").split(",")
             if w.strip() and w.strip().lower() != "none"]
    unknown = [w for w in names if w not in WEIGHTINGS]
    if unknown:
        raise ValueError(f"WEIGHTING: {', '.join(unknown)} unknown; give none, or any of {', '.join(WEIGHTINGS)}")
    return tuple(dict.fromkeys(names))


def _sample(cache, train_idx, seed):
    rng = np.random.default_rng([seed, 47])
    idx = np.asarray(train_idx, int)
    return idx if len(idx) <= PATCHES else np.sort(rng.choice(idx, PATCHES, replace=False))


def loss_weights(weighting, cache, train_idx, mean, std, seed: int = 0) -> dict | None:
    """What the training loop needs to weight a batch, as plain numbers (stored in the
    model's training record), or None without WEIGHTING."""
    if not weighting:
        return None
    bands = list(cache.bands)
    visible = [bands.index(b) for b in VISIBLE if b in bands]
    if not visible:
        raise ValueError(f"WEIGHTING dark needs a visible band (one of {', '.join(VISIBLE)}); the model's bands "
                         f"are {', '.join(bands)}")
    values = []
    for i in _sample(cache, train_idx, seed):
        x, y, v = cache.read(int(i))
        values.append(x[visible].mean(axis=0)[(y > 0) & v])
    values = np.concatenate(values) if values else np.zeros(0)
    if values.size == 0:
        raise ValueError("WEIGHTING dark: the training patches hold no valid glacier pixel")
    # compared on standardised inputs in batch_weights: the bands' mean and std undo it there
    return {"weighting": list(weighting), "visible": visible, "dark_level": float(np.quantile(values, DARK_QUANTILE)),
            "dark_weight": DARK_WEIGHT, "_mean": [float(mean[c]) for c in visible],
            "_std": [float(std[c]) for c in visible]}


def batch_weights(spec: dict | None, x, y, valid):
    """The weight of each pixel of a standardised batch (torch), or None."""
    if not spec:
        return None
    import torch
    m = torch.tensor(spec["_mean"], dtype=x.dtype, device=x.device)[None, :, None, None]
    s = torch.tensor(spec["_std"], dtype=x.dtype, device=x.device)[None, :, None, None]
    raw = (x[:, spec["visible"]].float() * s + m).mean(dim=1)  # undo the standardisation
    dark = (y > 0) & valid & (raw <= spec["dark_level"])
    return torch.where(dark, torch.full_like(y, spec["dark_weight"]), torch.ones_like(y))
