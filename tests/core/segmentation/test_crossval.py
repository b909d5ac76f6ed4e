import numpy as np
import pytest
import rasterio
from shapely.geometry import box

from glacier_mapper_plugin.core.segmentation.crossval import cross_validate, geographic_folds
from glacier_mapper_plugin.core.labels import Inventory
from glacier_mapper_plugin.core.segmentation.train import TrainOptions
from glacier_mapper_plugin.core.vector import read_layer


def _boxes(widths, crs="EPSG:32632"):
    geoms, x = [], 600000.0
    for w in widths:
        geoms.append(box(x, 5200000, x + w, 5201000))
        x += w + 5000
    return Inventory(list(range(len(widths))), geoms, crs)


def test_equal_glaciers_fold_west_to_east():
    inv = _boxes([1000] * 10)
    assert geographic_folds(inv, 5) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_folds_balance_area_not_count():
    inv = _boxes([4000, 1000, 1000, 1000, 1000])  # one big glacier = half the area
    assert geographic_folds(inv, 2) == [0, 1, 1, 1, 1]


def test_order_is_by_longitude_even_when_shuffled():
    inv = _boxes([1000] * 4)
    shuffled = Inventory([3, 1, 0, 2], [inv.geometries[i] for i in (3, 1, 0, 2)], inv.crs)
    assert geographic_folds(shuffled, 2) == [1, 0, 0, 1]


def test_no_empty_fold_and_clear_errors():
    inv = _boxes([10000, 100, 100])
    folds = geographic_folds(inv, 3)
    assert sorted(set(folds)) == [0, 1, 2]
    with pytest.raises(ValueError, match="FOLDS"):
        geographic_folds(inv, 4)
    with pytest.raises(ValueError, match="FOLDS"):
        geographic_folds(inv, 1)


def test_cross_validation_end_to_end(small_region, tmp_path):
    inv = Inventory.from_layer(read_layer(small_region.inventory, "inventory"))
    cv = cross_validate([small_region.imagery_start], inv, tmp_path, small_region.dem, k=3,
                        options=TrainOptions(patch_size=64, encoder="resnet18", epochs=1,
                                             batch_size=4, device="cpu", seed=1))
    table = cv.table()
    assert [r["subregion"] for r in table] == ["fold 1", "fold 2", "fold 3", "mean", "std"]
    assert sum(r["glaciers"] for r in table[:3]) == 3
    assert all(0 <= r["accuracy"] <= 1 for r in table[:3])
    assert len(cv.predictions) == 1 and sorted(p.name for p in tmp_path.glob("*.gmm")) == \
        ["fold_1.gmm", "fold_2.gmm", "fold_3.gmm"]
    with rasterio.open(cv.predictions[0]) as src, rasterio.open(small_region.truth_start) as t:
        prob, truth = src.read(1), t.read(1)
    assert np.isfinite(prob[truth > 0]).mean() > 0.9
    assert not list(tmp_path.glob("*_fold[0-9]*_probability.tif"))  # per-fold scratch removed
    # The out-of-fold map is judged against the fold scores: warned exactly when the rule says.
    from glacier_mapper_plugin.core.segmentation.crossval import _map_confusion
    from glacier_mapper_plugin.core.segmentation.plausibility import out_of_fold_warning
    expected = out_of_fold_warning(cv.mean["iou"], _map_confusion(cv.predictions, inv, 0.5))
    assert cv.warnings == ([expected] if expected else [])


def test_out_of_fold_composite_in_blocks_equals_one_distance_map(region, tmp_path):
    """Blocks of rows with a margin give each pixel the fold of its nearest glacier, as one
    distance transform of the whole raster does, up to the reach of the fold predictions."""
    import rasterio
    from scipy import ndimage
    from glacier_mapper_plugin.core.segmentation.crossval import compose_out_of_fold
    from glacier_mapper_plugin.core.labels import rasterize_ids
    inv = Inventory.from_layer(read_layer(region.inventory, "inventory"))
    folds = [k % 3 for k in range(len(inv.ids))]
    probs = []
    with rasterio.open(region.imagery_start) as src:
        prof = dict(src.profile, count=1, dtype="float32", nodata=None)
        ids = rasterize_ids(inv, src.crs, src.transform, (src.height, src.width))
    for f in range(3):
        probs.append(tmp_path / f"fold{f}.tif")
        with rasterio.open(probs[-1], "w", **prof) as dst:
            dst.write(np.full((1, prof["height"], prof["width"]), (f + 1) / 10, np.float32))
    out = compose_out_of_fold(region.imagery_start, probs, inv, folds, tmp_path / "oof.tif",
                              reach_m=300.0, block_rows=37)
    with rasterio.open(out) as src:
        got = src.read(1)
    dist, (ri, ci) = ndimage.distance_transform_edt(ids == 0, return_indices=True)
    want = (np.concatenate([[-1], folds])[ids[ri, ci]] + 1) / 10
    near = dist <= 300 / 10 + 2
    assert np.isnan(got[~near]).all()
    assert np.allclose(got[near], want[near].astype(np.float32))


def test_out_of_fold_members_in_one_run_equal_the_mean_of_their_own_runs(small_region, tmp_path):
    """2 folds x 2 members: each fold's members go through one ENSEMBLE run; the out-of-fold
    map equals the one composed from every member segmented on its own (their mean)."""
    from glacier_mapper_plugin.core.segmentation.crossval import MASK_BUFFER_M, _near, compose_out_of_fold
    from glacier_mapper_plugin.core.segmentation.segment import SegmentOptions, segment
    inv = Inventory.from_layer(read_layer(small_region.inventory, "inventory"))
    opts = TrainOptions(patch_size=64, encoder="resnet18", epochs=1, batch_size=4, device="cpu", seed=2)
    cv = cross_validate([small_region.imagery_start], inv, tmp_path / "cv", small_region.dem, k=2,
                        options=opts, members=2)
    near, crs = _near(inv, small_region.imagery_start, MASK_BUFFER_M)
    local = inv.subset(near).to_crs(crs).geometries
    per_fold = []
    for r in cv.results:
        seg = SegmentOptions(tile_size=256, overlap=16, device="cpu", mask_geometries=[
            g for g, i in zip(local, near) if cv.folds[i] == r.fold], mask_buffer_m=MASK_BUFFER_M)
        outs = [tmp_path / f"fold{r.fold}_m{m}.tif" for m in range(2)]
        for model, out in zip(r.members, outs):
            segment(small_region.imagery_start, model, out, dem_path=small_region.dem, options=seg)
        per_fold.append(outs)
    alone = compose_out_of_fold(small_region.imagery_start, per_fold, inv, cv.folds, tmp_path / "alone.tif",
                                MASK_BUFFER_M)
    with rasterio.open(cv.predictions[0]) as a, rasterio.open(alone) as b:
        together, apart = a.read(1), b.read(1)
    assert np.array_equal(np.isnan(together), np.isnan(apart)) and np.isfinite(together).mean() > 0.3
    assert np.nanmax(np.abs(together - apart)) < 1e-5
