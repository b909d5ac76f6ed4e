"""WEIGHTING dark: the loss weight of dark glacier pixels, measured on real patches of the
synthetic region and applied to standardised batches."""
import numpy as np
import pytest
import torch

from glacier_mapper_plugin.core.labels import Inventory
from glacier_mapper_plugin.core.segmentation.patches import band_statistics, extract_patches
from glacier_mapper_plugin.core.segmentation.train import TrainOptions, masked_bce, standardise, train_model
from glacier_mapper_plugin.core.segmentation.weighting import DARK_WEIGHT, batch_weights, loss_weights, parse
from glacier_mapper_plugin.core.vector import read_layer

BANDS = ["B2", "B3", "B4", "B8", "B12", "DEM"]


@pytest.fixture(scope="module")
def cache(small_region, tmp_path_factory):
    inv = Inventory.from_layer(read_layer(small_region.inventory, "inventory"))
    return extract_patches([small_region.imagery_start], inv, BANDS, 64, small_region.dem,
                           cache_root=tmp_path_factory.mktemp("patches"))


def _batch(cache, mean, std):
    x, y, v = cache.arrays(range(len(cache)))
    return torch.from_numpy(standardise(x, v, mean, std)), torch.from_numpy(y.astype(np.float32)), torch.from_numpy(v)


def test_parse_names_the_parameter():
    assert parse("Dark, dark") == ("dark",) and parse(None) == () and parse("") == () and parse("none") == ()
    with pytest.raises(ValueError, match="WEIGHTING: balance unknown"):
        parse("dark,balance")  # tried and dropped (docs/benchmarks.md)


def test_dark_weights_the_darkest_third_of_the_glacier_pixels(cache):
    idx = np.arange(len(cache))
    mean, std = band_statistics(cache.moments[idx])
    spec = loss_weights(("dark",), cache, idx, mean, std)
    x_raw, y_raw, v_raw = cache.arrays(idx)
    brightness = x_raw[:, [BANDS.index(b) for b in ("B2", "B3", "B4")]].mean(axis=1)
    glacier = (y_raw > 0) & v_raw
    assert np.mean(brightness[glacier] <= spec["dark_level"]) == pytest.approx(1 / 3, abs=0.01)
    x, y, v = _batch(cache, mean, std)
    w = batch_weights(spec, x, y, v).numpy()
    # the level is read back from standardised inputs: the same pixels as on the decoded bands
    dark = glacier & (brightness <= spec["dark_level"])
    near = np.abs(brightness - spec["dark_level"]) < 1e-5  # float32 round trip at the boundary
    assert np.all(w[dark & ~near] == DARK_WEIGHT) and np.all(w[~dark & ~near] == 1.0)


def test_dark_needs_a_visible_band(cache):
    idx = np.arange(len(cache))
    with pytest.raises(ValueError, match="WEIGHTING dark needs a visible band"):
        class NoVisible:
            bands = ["B8", "B12", "DEM"]
        loss_weights(("dark",), NoVisible(), idx, [0] * 3, [1] * 3)


def test_unit_weights_change_nothing():
    logits, target = torch.randn(2, 8, 8), torch.randint(0, 2, (2, 8, 8)).float()
    valid = torch.rand(2, 8, 8) > 0.2
    assert float(masked_bce(logits, target, valid, torch.ones_like(target))) == pytest.approx(
        float(masked_bce(logits, target, valid)))


def test_the_weighting_is_recorded_in_the_model(small_region, tmp_path):
    inv = Inventory.from_layer(read_layer(small_region.inventory, "inventory"))
    res = train_model([small_region.imagery_start], inv, tmp_path / "m.gmm", small_region.dem,
                      TrainOptions(patch_size=64, encoder="resnet18", epochs=1, batch_size=4, device="cpu",
                                   weighting=("dark",)))
    recorded = res.header.training["weighting"]
    assert recorded["weighting"] == ["dark"] and recorded["dark_weight"] == DARK_WEIGHT
    assert not any(k.startswith("_") for k in recorded)
