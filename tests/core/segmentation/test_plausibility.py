"""Implausible maps and scores are said, not passed: the rules with their thresholds
(hypothesis), the decimated map check against the full-resolution truth, the warnings as
the user meets them (segment_glaciers with a model trained badly, cross_validate's
out-of-fold map with the numbers of issue 25)."""
import numpy as np
import pytest
import rasterio
from hypothesis import given, settings, strategies as st
from rasterio.transform import from_origin
from shapely.geometry import box

from glacier_mapper_plugin.core.segmentation.plausibility import (
    MAX_SHARE_ALONE, MIN_VALIDATION_IOU, map_check, out_of_fold_warning, share_warning, validation_warning)

share = st.floats(0.0, 1.0, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(share)
def test_a_map_that_matches_its_outlines_is_never_questioned(r):
    assert share_warning(r, r) is None


@settings(max_examples=300, deadline=None)
@given(share, share, share)
def test_more_ice_than_implausible_stays_implausible(p, p2, r):
    high, low = max(p, p2), min(p, p2)
    said = share_warning(low, r)
    if said and "misses" not in said:
        assert share_warning(high, r) is not None and "misses" not in share_warning(high, r)
    if said and "misses" in said:  # too little ice: less is as bad
        assert share_warning(low * 0.5, r) is not None


@settings(max_examples=200, deadline=None)
@given(share)
def test_alone_only_a_map_of_nearly_all_ice_is_questioned(p):
    assert (share_warning(p) is not None) == (p > MAX_SHARE_ALONE)


def test_validation_and_out_of_fold_rules():
    assert validation_warning(None) is None and validation_warning(float("nan")) is None
    assert validation_warning(MIN_VALIDATION_IOU) is None
    assert "below 0.5" in validation_warning(0.31)
    # Issue 25: four folds at IoU 0.69-0.81 while the out-of-fold map called 77 % of valid
    # pixels glacier against 36 % true.
    n = 10_000
    tp, fp, fn = int(0.34 * n), int(0.43 * n), int(0.02 * n)
    said = out_of_fold_warning(0.75, dict(tp=tp, fp=fp, fn=fn, tn=n - tp - fp - fn, iou=tp / (tp + fp + fn)))
    assert said and "77%" in said and "36%" in said
    tp, fp, fn = int(0.30 * n), int(0.04 * n), int(0.05 * n)
    assert out_of_fold_warning(0.75, dict(tp=tp, fp=fp, fn=fn, tn=n - tp - fp - fn, iou=tp / (tp + fp + fn))) is None


def _probability(path, array, transform):
    with rasterio.open(path, "w", driver="GTiff", width=array.shape[1], height=array.shape[0], count=1,
                       dtype="float32", nodata=float("nan"), crs="EPSG:32632", transform=transform,
                       tiled=True, blockxsize=256, blockysize=256) as dst:
        dst.write(array.astype("float32"), 1)
    return str(path)


def test_the_decimated_check_agrees_with_the_full_map(tmp_path):
    """A 2600 px map (read at 1024 px) with blobs of ice, a no-data strip and outlines over a
    part: shares within a point of the full-resolution counts."""
    rng = np.random.default_rng(3)
    side = 2600
    from scipy import ndimage
    field = ndimage.gaussian_filter(rng.normal(size=(side, side)), 40)
    prob = (field > np.quantile(field, 0.7)).astype("float32")
    prob[:, :300] = np.nan
    t = from_origin(600000, 5200000, 10, 10)
    path = _probability(tmp_path / "p.tif", prob, t)
    outlines = [box(600000 + 5000, 5200000 - 20000, 600000 + 15000, 5200000 - 5000)]
    check = map_check(path, 0.5, outlines)
    valid = np.isfinite(prob)
    assert check["predicted"] == pytest.approx(float((prob[valid] >= 0.5).mean()), abs=0.01)
    rows, cols = np.mgrid[0:side, 0:side]
    x, y = 600000 + (cols + 0.5) * 10, 5200000 - (rows + 0.5) * 10
    ice = (x > 605000) & (x < 615000) & (y > 5180000) & (y < 5195000)
    assert check["reference"] == pytest.approx(float(ice[valid].mean()), abs=0.01)
    # All ice where the outlines cover a fifth: said.
    everything = _probability(tmp_path / "all.tif", np.ones((400, 400)), t)
    small = [box(600000, 5200000 - 1600, 600000 + 2000, 5200000)]  # 200 x 160 px of 400 x 400
    check = map_check(everything, 0.5, small)
    assert check["predicted"] == 1.0 and check["reference"] == pytest.approx(0.2, abs=0.01)
    assert "calls 100% of its valid pixels glacier where the outlines cover 20%" in share_warning(
        check["predicted"], check["reference"])
    nodata = _probability(tmp_path / "none.tif", np.full((50, 50), np.nan), t)
    assert np.isnan(map_check(nodata, 0.5)["predicted"])


def test_segment_glaciers_repeats_the_models_warning_and_judges_the_map(tmp_path, untrained_model):
    """A model whose training said its validation IoU was low: segment_glaciers repeats it;
    a map of all ice against small outlines is said."""
    from glacier_mapper_plugin.core.progress import Progress
    from glacier_mapper_plugin.core.segmentation.model_file import load_model, read_header, save_model
    from glacier_mapper_plugin.core.segmentation.segment import SegmentOptions
    from glacier_mapper_plugin.engine.steps.segmentation import _say_if_implausible
    header = read_header(untrained_model)
    header.metrics = {"warnings": [validation_warning(0.2)]}
    network = load_model(untrained_model)[0]
    model = save_model(tmp_path / "bad.gmm", network, header)
    said = []

    class Log(Progress):
        def warning(self, message):
            said.append(message)

    t = from_origin(600000, 5200000, 10, 10)
    everything = _probability(tmp_path / "all.tif", np.ones((400, 400)), t)
    _say_if_implausible(model, everything, SegmentOptions(), [box(600000, 5200000 - 1600, 600000 + 2000, 5200000)], Log())
    assert said[0].startswith("MODEL: validation IoU per glacier 0.20 is below 0.5")
    assert "calls 100% of its valid pixels glacier where the outlines cover 20%" in said[1]
