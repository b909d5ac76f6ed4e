import numpy as np
import pytest

from glacier_mapper_plugin.core.segmentation.baseline import threshold_baseline
from glacier_mapper_plugin.core.segmentation.patches import Patch, PatchCache, _CacheWriter
from glacier_mapper_plugin.core.segmentation.plausibility import validation_warning


def _cache(folder, bands, make, n=12, size=32, seed=0):
    """n patches of `size` px whose bands `make(label, rng)` draws from a label with a
    glacier in one half, a shadowed (dark) strip on the ice and a cloud in patch 0."""
    rng = np.random.default_rng(seed)
    writer = _CacheWriter(folder)
    for i in range(n):
        label = np.zeros((size, size), np.uint8)
        label[:, : size // 2 + (i % 5)] = 1
        valid = np.ones((size, size), bool)
        if i == 0:
            valid[:8, :8] = False
        writer.add(make(label, rng).astype(np.float32), label, valid, Patch(0, 0, size * i, i % 4 + 1))
    writer.close(bands, size)
    return PatchCache(folder)


def _s2(label, rng):
    """B3 and B11 as Sentinel-2 L2A reflectance: ice bright in green and dark in SWIR, even
    in shadow (NDSI holds where brightness does not)."""
    shade = np.where(np.arange(label.shape[1]) < 6, 0.25, 1.0)[None, :]
    green = np.where(label, 0.6, 0.12) * shade + rng.normal(0, 0.01, label.shape)
    swir = np.where(label, 0.05, 0.2) * shade + rng.normal(0, 0.01, label.shape)
    return np.stack([green, swir])


def test_ndsi_threshold_finds_shadowed_ice(tmp_path):
    cache = _cache(tmp_path, ["B3", "B11"], _s2)
    idx = np.arange(12)
    train, val = idx[idx % 4 != 0], idx[idx % 4 == 0]
    base = threshold_baseline(cache, train, val, [1] * len(val))
    assert base["index"] == "NDSI (B3, B11)" and base["val_iou"] > 0.97
    assert 0.375 < base["threshold"] < 0.92  # between rock (NDSI -0.25) and ice (0.85), scaled to [0, 1]


def test_brightness_when_there_is_no_swir(tmp_path):
    cache = _cache(tmp_path, ["RED", "GREEN", "BLUE"], lambda label, rng: np.repeat(_s2(label, rng)[:1], 3, 0))
    idx = np.arange(12)
    base = threshold_baseline(cache, idx[idx % 4 != 0], idx[idx % 4 == 0], [1] * 3)
    # the shadowed strip of ice is as dark as rock: brightness misses it, as in the field
    assert base["index"] == "brightness" and 0.6 < base["val_iou"] < 0.95


def test_no_index_or_no_validation_gives_no_bar(tmp_path):
    cache = _cache(tmp_path, ["NIR"], lambda label, rng: _s2(label, rng)[:1])
    assert threshold_baseline(cache, np.arange(8), np.arange(8, 12), [1] * 4) is None
    (tmp_path / "b").mkdir()
    cache = _cache(tmp_path / "b", ["B3", "B11"], _s2)
    assert threshold_baseline(cache, np.arange(12), np.array([], int), []) is None


@pytest.mark.parametrize("iou, bar, says", [(0.70, 0.60, False), (0.55, 0.60, True), (0.60, 0.60, True),
                                            (0.45, float("nan"), True), (0.55, float("nan"), False)])
def test_a_model_that_does_not_beat_the_threshold_says_so(iou, bar, says):
    baseline = {"index": "NDSI (B3, B11)", "threshold": 0.62, "val_iou": bar}
    message = validation_warning(iou, baseline)
    assert bool(message) == says
    if says and np.isfinite(bar):
        assert "does not beat a NDSI (B3, B11) threshold" in message and f"({bar:.2f})" in message
