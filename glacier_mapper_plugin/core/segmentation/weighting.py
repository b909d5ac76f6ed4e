"""Per-pixel weights of the training loss (WEIGHTING), each an ablation of issue 26 item 7.

balance: glacier and other pixels weighted by the inverse of their share in the training
  patches (each class then carries half the loss), the usual answer to a class imbalance;
  glacier-centred patches of a region with small glaciers are mostly rock.
dark: glacier pixels darker than the darkest third of the training glacier pixels (visible
  bands' mean: debris-covered tongues and shaded ice, the pixels a U-Net misses first)
  weighted DARK_WEIGHT times.

Both are measured from a seeded sample of the training patches only, so they are
reproducible and validation pixels play no part. docs/benchmarks.md says what each did.
"""
from __future__ import annotations

import numpy as np

from .baseline import VISIBLE

WEIGHTINGS = ("balance", "dark")
DARK_WEIGHT = 2.0
DARK_QUANTILE = 1 / 3
PATCHES = 200  # sampled training patches: enough for one share and one quantile


def parse(text) -> tuple[str, ...]:
    names = [w.strip().lower() for w in str(text or "").replace(";", ",").split(",") if w.strip()]
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
    glacier = other = 0
    dark_values = []
    visible = [bands.index(b) for b in VISIBLE if b in bands]
    if "dark" in weighting and not visible:
        raise ValueError(f"WEIGHTING dark needs a visible band (one of {', '.join(VISIBLE)}); the model's bands "
                         f"are {', '.join(bands)}")
    for i in _sample(cache, train_idx, seed):
        x, y, v = cache.read(int(i))
        g = (y > 0) & v
        glacier += int(g.sum())
        other += int((v & ~g).sum())
        if visible:
            dark_values.append(x[visible].mean(axis=0)[g])
    spec: dict = {"weighting": list(weighting)}
    if "balance" in weighting:
        share = glacier / max(glacier + other, 1)
        if not 0 < share < 1:
            raise ValueError("WEIGHTING balance: the training patches hold one class only")
        spec["glacier_weight"], spec["other_weight"] = 0.5 / share, 0.5 / (1 - share)
    if "dark" in weighting:
        values = np.concatenate(dark_values) if dark_values else np.zeros(0)
        if values.size == 0:
            raise ValueError("WEIGHTING dark: the training patches hold no valid glacier pixel")
        # the brightness is compared on standardised inputs: level -> (level - mean) / std per band
        level = float(np.quantile(values, DARK_QUANTILE))
        spec["visible"] = visible
        spec["dark_level"] = level
        spec["dark_weight"] = DARK_WEIGHT
        spec["_mean"] = [float(mean[c]) for c in visible]
        spec["_std"] = [float(std[c]) for c in visible]
    return spec


def batch_weights(spec: dict | None, x, y, valid):
    """The weight of each pixel of a standardised batch (torch), or None."""
    if not spec:
        return None
    import torch
    w = torch.ones_like(y)
    glacier = (y > 0) & valid
    if "glacier_weight" in spec:
        w = torch.where(glacier, torch.full_like(w, spec["glacier_weight"]), torch.full_like(w, spec["other_weight"]))
    if "dark_level" in spec:
        m = torch.tensor(spec["_mean"], dtype=x.dtype, device=x.device)[None, :, None, None]
        s = torch.tensor(spec["_std"], dtype=x.dtype, device=x.device)[None, :, None, None]
        raw = (x[:, spec["visible"]].float() * s + m).mean(dim=1)  # undo the standardisation
        w = torch.where(glacier & (raw <= spec["dark_level"]), w * spec["dark_weight"], w)
    return w
