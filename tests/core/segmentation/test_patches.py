import numpy as np
import pytest

from glacier_mapper_plugin.core.labels import Inventory, rasterize_ids
from glacier_mapper_plugin.core.segmentation.patches import (extract_patches, glacier_centres, patch_origin,
                                                sample_patches)
from glacier_mapper_plugin.core.vector import read_layer


def test_centres_lie_on_the_glacier_and_include_extremes():
    ids = np.zeros((100, 100), np.int32)
    ids[10:60, 20:90] = 3
    centres = glacier_centres(ids, 3, 32)
    assert all(ids[r, c] == 3 for r, c in centres)
    rows = [r for r, _ in centres]
    cols = [c for _, c in centres]
    assert min(rows) == 10 and max(rows) == 59 and min(cols) == 20 and max(cols) == 89
    grid = {(r, c) for r in range(10, 60, 16) for c in range(20, 90, 16)}
    assert grid <= set(centres)


def test_small_glacier_gets_a_patch():
    ids = np.zeros((50, 50), np.int32)
    ids[30, 30] = 1
    assert glacier_centres(ids, 1, 256) == [(30, 30)]


def test_patches_shift_inside_the_raster():
    assert patch_origin(5, 32, 100) == 0
    assert patch_origin(98, 32, 100) == 68
    assert patch_origin(50, 32, 100) == 34
    assert patch_origin(10, 256, 100) == 0  # raster smaller than a patch


def test_sample_counts_and_glacier_subset():
    ids = np.zeros((128, 128), np.int32)
    ids[10:40, 10:40] = 1
    ids[80:120, 70:120] = 2
    all_p = sample_patches(ids, 32)
    only2 = sample_patches(ids, 32, glaciers=[2])
    assert {p.glacier for p in all_p} == {1, 2}
    assert {p.glacier for p in only2} == {2}
    assert len(all_p) == len(sample_patches(ids, 32, glaciers=[1])) + len(only2)
    assert all(0 <= p.row <= 96 and 0 <= p.col <= 96 for p in all_p)


def test_extract_labels_and_validity_from_scl(region):
    inv = Inventory.from_layer(read_layer(region.inventory, "inventory"))
    ps = extract_patches([region.imagery_start], inv, ["B2", "B3", "B4", "B8", "B12", "DEM"], 64,
                         dem_path=region.dem)
    x, y, valid = ps.arrays(range(len(ps)))
    assert x.shape[1:] == (6, 64, 64) and y.shape == valid.shape == (len(ps.patches), 64, 64)
    # Each patch is centred on its glacier, so that glacier is in its label.
    assert all(y[i].any() for i in range(len(ps.patches)))
    # Cloud and no-data pixels are invalid; so the SCL decides validity.
    import rasterio
    with rasterio.open(region.imagery_start) as src:
        scl = src.read(6)
    p = ps.patches[0]
    window_scl = scl[p.row:p.row + 64, p.col:p.col + 64]
    assert np.array_equal(~valid[0], np.isin(window_scl, (0, 1, 3, 8, 9, 10)))


def test_inventory_in_wgs84_burns_the_same_pixels(region):
    import rasterio
    layer = read_layer(region.inventory, "inventory")
    inv = Inventory.from_layer(layer)
    with rasterio.open(region.imagery_start) as src:
        a = rasterize_ids(inv, src.crs, src.transform, (src.height, src.width))
        b = rasterize_ids(inv.to_crs("EPSG:4326"), src.crs, src.transform, (src.height, src.width))
    assert np.mean(a == b) > 0.999


def test_missing_id_field_is_named(region):
    with pytest.raises(ValueError, match="ID_FIELD.*RGIId"):
        Inventory.from_layer(read_layer(region.inventory, "inventory"), "RGIId")


def test_each_glacier_sampled_once_across_overlapping_chips(region, tmp_path):
    """Two overlapping halves of a scene: every glacier's patches come from one of them."""
    import rasterio
    from rasterio.windows import Window
    paths = []
    with rasterio.open(region.imagery_start) as src:
        for name, win in (("w", Window(0, 0, 260, 400)), ("e", Window(140, 0, 260, 400))):
            prof = dict(src.profile, width=win.width, height=win.height,
                        transform=src.window_transform(win))
            with rasterio.open(tmp_path / f"{name}.tif", "w", **prof) as dst:
                dst.write(src.read(window=win))
                dst.descriptions = src.descriptions
                dst.update_tags(**src.tags())
            paths.append(tmp_path / f"{name}.tif")
    inv = Inventory.from_layer(read_layer(region.inventory, "inventory"))
    ps = extract_patches(paths, inv, ["B2", "B3"], 64)
    sources = {}
    for p in ps.patches:
        sources.setdefault(p.glacier, set()).add(p.source)
    assert all(len(s) == 1 for s in sources.values())
    assert set(sources) == set(range(1, len(inv.ids) + 1))


def test_patches_are_cut_once_and_reused_until_an_input_changes(small_region, tmp_path):
    import os
    import shutil
    inv = Inventory.from_layer(read_layer(small_region.inventory, "inventory"))
    raster = tmp_path / "scene.tif"
    shutil.copy(small_region.imagery_start, raster)
    a = extract_patches([raster], inv, ["B2", "B3"], 64, cache_root=tmp_path / "cache")
    b = extract_patches([raster], inv, ["B2", "B3"], 64, cache_root=tmp_path / "cache")
    assert a.folder == b.folder and len(a) == len(b) > 0
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [a.folder.name]  # no partial left
    other = extract_patches([raster], inv, ["B2", "B3"], 32, cache_root=tmp_path / "cache")
    assert other.folder != a.folder  # other settings, other cache
    os.utime(raster, ns=(1, 1))  # the scene was replaced: its patches must be cut again
    assert extract_patches([raster], inv, ["B2", "B3"], 64, cache_root=tmp_path / "cache").folder != a.folder


def test_cutting_patches_holds_one_patch_not_all_of_them(region, tmp_path):
    """Peak Python-heap memory while cutting does not grow with the number of patches: all
    glaciers cost what one glacier costs (the raster-sized work is the same for both)."""
    import tracemalloc
    inv = Inventory.from_layer(read_layer(region.inventory, "inventory"))
    peaks, sizes = [], []
    for glaciers, root in ((None, "all"), ([1], "one")):
        tracemalloc.start()
        ps = extract_patches([region.imagery_start], inv, ["B2", "B3", "B4", "B8", "B12", "DEM"], 64,
                             dem_path=region.dem, glaciers=glaciers, cache_root=tmp_path / root)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        sizes.append(sum(f.stat().st_size for f in ps.folder.glob("*.bin")))
    assert sizes[0] > 5 * sizes[1]
    assert peaks[0] - peaks[1] < sizes[0] / 10, (peaks, sizes)


def test_band_statistics_merge_exactly():
    from glacier_mapper_plugin.core.segmentation.patches import band_statistics
    rng = np.random.default_rng(0)
    parts = [rng.normal(3000, 400, size=n) for n in (10, 1000, 1, 77)]
    moments = np.array([[[p.size, p.mean(), ((p - p.mean()) ** 2).sum()]] for p in parts])
    mean, std = band_statistics(moments)
    allv = np.concatenate(parts)
    assert mean[0] == pytest.approx(allv.mean(), rel=1e-12) and std[0] == pytest.approx(allv.std(), rel=1e-12)
