import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import box

from glacier_mapper_plugin.core.segmentation.evaluate import evaluate
from glacier_mapper_plugin.core.labels import Inventory

T = from_origin(600000, 5200100, 10, 10)


def _write(path, arr, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1,
                       dtype=arr.dtype, crs="EPSG:32632", transform=T, nodata=nodata) as dst:
        dst.write(arr, 1)
    return path


def _inventory():
    # Glacier A: rows 2-5, cols 2-5 (16 px); glacier B: rows 2-5, cols 12-15 (16 px).
    a = box(600020, 5200100 - 60, 600060, 5200100 - 20)
    b = box(600120, 5200100 - 60, 600160, 5200100 - 20)
    return Inventory(["A", "B"], [a, b], "EPSG:32632")


def test_hand_made_prediction(tmp_path):
    mask = np.zeros((10, 20), np.uint8)
    mask[2:6, 2:6] = 1          # A fully found
    mask[2:4, 12:16] = 1        # half of B found
    mask[2:6, 6] = 1            # 4 false-positive pixels right next to A (0-10 m ring)
    mask[2:6, 8] = 1            # 4 more 25-30 m away from A (20-50 m ring)
    ev = evaluate(_write(tmp_path / "m.tif", mask), _inventory())
    a, b = ev.glaciers
    assert a["recall"] == 1.0 and b["recall"] == 0.5
    assert a["area_predicted_km2"] == pytest.approx(16 * 100 / 1e6, rel=2e-3)
    assert a["area_inventory_km2"] == pytest.approx(16 * 100 / 1e6, rel=2e-3)
    assert a["fp_0_10m_km2"] == pytest.approx(4 * 100 / 1e6, rel=2e-3)
    assert a["fp_10_20m_km2"] == 0
    assert a["fp_20_50m_km2"] == pytest.approx(4 * 100 / 1e6, rel=2e-3)
    assert b["fp_0_10m_km2"] == 0
    c = ev.overall
    assert (c["tp"], c["fp"], c["fn"]) == (24, 8, 8)


def test_probability_quality_and_wgs84_inventory(tmp_path):
    prob = np.zeros((10, 20), np.float32)
    prob[2:6, 2:6] = 0.9
    prob[2:6, 12:16] = 0.8
    prob[0, 0] = np.nan
    scl = np.full((10, 20), 4, np.uint8)
    scl[2:4, 12:16] = 9         # cloud over half of B
    q = tmp_path / "q.tif"
    with rasterio.open(q, "w", driver="GTiff", width=20, height=10, count=1, dtype="uint8",
                       crs="EPSG:32632", transform=T) as dst:
        dst.write(scl, 1)
        dst.set_band_description(1, "SCL")
    ev = evaluate(_write(tmp_path / "p.tif", prob, nodata=float("nan")),
                  _inventory().to_crs("EPSG:4326"), quality_raster=q)
    a, b = ev.glaciers
    assert b["masked_fraction"] == pytest.approx(0.5)
    assert b["recall"] == 1.0  # on the unmasked half
    assert a["masked_fraction"] == 0
    assert ev.overall["iou"] == 1.0


def test_blocks_of_rows_equal_one_whole_raster_distance_transform(tmp_path, monkeypatch):
    """Evaluated in blocks of 37 rows (pieces of a pool), every count, recall and ring share
    is that of one pass over the whole raster with one distance transform (which costs
    4-5 GB on a full tile): confusion, per-glacier pixels, rings across block borders."""
    from scipy import ndimage

    import glacier_mapper_plugin.core.segmentation.evaluate as ev
    from glacier_mapper_plugin.core.cluster import LocalPool
    rng = np.random.default_rng(1)
    rects = [(20, 20, 40, 60), (65, 30, 30, 30), (150, 200, 80, 90), (240, 295, 20, 20), (10, 370, 50, 30)]
    ids = np.zeros((300, 400), np.int32)
    geoms = []
    for k, (r, c, h, w) in enumerate(rects, start=1):
        ids[r:r + h, c:c + w] = k
        geoms.append(box(600000 + 10 * c, 5200100 - 10 * (r + h), 600000 + 10 * (c + w), 5200100 - 10 * r))
    glacier = rng.random(ids.shape) < 0.3
    valid = rng.random(ids.shape) < 0.9
    mask = np.where(valid, glacier, 255).astype(np.uint8)
    pred = _write(tmp_path / "mask.tif", mask, nodata=255)
    inv = Inventory([f"G{k}" for k in range(1, 6)], geoms, "EPSG:32632")
    monkeypatch.setattr(ev, "BLOCK_ROWS", 37)
    result = evaluate(pred, inv, pool=LocalPool(2))
    dist, (ri, ci) = ndimage.distance_transform_edt(ids == 0, sampling=10.0, return_indices=True)
    nearest = ids[ri, ci]
    truth = ids > 0
    assert result.overall["tp"] == int((glacier & truth & valid).sum())
    assert result.overall["fp"] == int((glacier & ~truth & valid).sum())
    for k, rec in enumerate(result.glaciers, start=1):
        assert rec["pixels"] == int((ids == k).sum())
        assert rec["recall"] == (glacier & valid & (ids == k)).sum() / (valid & (ids == k)).sum()
        for lo, hi in ev.RINGS_M:
            ring = (ids == 0) & (dist > lo) & (dist <= hi) & valid & (nearest == k)
            assert rec[f"fp_{lo}_{hi}m_fraction"] == (ring & glacier).sum() / ring.sum()
