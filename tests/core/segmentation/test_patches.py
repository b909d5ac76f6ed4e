import numpy as np
import pytest

from glacier_mapper_plugin.core.labels import Inventory, rasterize_ids
from glacier_mapper_plugin.core.segmentation.patches import (Patch, cut_windows, extract_patches, glacier_centres,
                                                patch_origin)
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


def _whole_grid_patches(raster, inv, size, glaciers=None):
    """The patches as the whole raster's id grid gives them (the cut before per-glacier
    windows): each glacier's pixel box from one grid, its centres, its labels sliced."""
    import rasterio
    from scipy import ndimage
    with rasterio.open(raster) as src:
        ids = rasterize_ids(inv, src.crs, src.transform, (src.height, src.width))
    patches = []
    for gid, sl in enumerate(ndimage.find_objects(ids), start=1):
        if sl is None or (glaciers is not None and gid not in glaciers):
            continue
        for r, c in glacier_centres(ids[sl], gid, size, (sl[0].start, sl[1].start)):
            patches.append(Patch(0, patch_origin(r, size, ids.shape[0]), patch_origin(c, size, ids.shape[1]), gid))
    return patches, ids


def _same_as_whole_grid(raster, inv, size, tmp_path, glaciers=None, bands=("B2",)):
    ps = extract_patches([raster], inv, list(bands), size, glaciers=glaciers, cache_root=tmp_path / "cache")
    expected, ids = _whole_grid_patches(raster, inv, size, glaciers)
    assert ps.patches == expected
    _, y, _ = ps.arrays(range(len(ps)))
    for p, label in zip(ps.patches, y):
        part = ids[p.row:p.row + size, p.col:p.col + size] > 0
        assert np.array_equal(label[:part.shape[0], :part.shape[1]], part) and not label[part.shape[0]:].any()
    return ps


def test_patches_per_glacier_window_equal_those_of_the_whole_grid(region, tmp_path):
    """Same patches, same labels, whether the ids are burnt per glacier window or once for the
    whole raster (glaciers that touch, a subset, patches shifted at the raster's edge)."""
    inv = Inventory.from_layer(read_layer(region.inventory, "inventory"))
    assert len(_same_as_whole_grid(region.imagery_start, inv, 64, tmp_path / "a")) > 20
    subset = _same_as_whole_grid(region.imagery_start, inv.to_crs("EPSG:4326"), 128, tmp_path / "b", glaciers=[2, 5])
    assert {p.glacier for p in subset.patches} == {2, 5}


def test_patches_per_glacier_window_on_real_rgi_outlines(shared_data, tmp_path):
    """everest_west (Landsat 7 over Khumbu, RGI 6.0 outlines: adjacent glaciers sharing
    divides, outlines cut at the crop's edge): the per-window cut equals the whole grid's."""
    data = shared_data / "everest_west"
    inv = Inventory.from_layer(read_layer(data / "rgi60_everest_west.gpkg"), "RGIId")
    assert len(_same_as_whole_grid(data / "everest_west.tif", inv, 64, tmp_path, bands=["RED"])) > 150


def test_cutting_memory_does_not_grow_with_the_raster(region, tmp_path):
    """The same glaciers in a scene 3 x 3 times larger (no data around): peak Python-heap
    memory while cutting patches and glacier-centred windows stays what the small scene
    costs, against 4 bytes a pixel more for an id grid of the whole raster."""
    import tracemalloc
    from pathlib import Path
    import rasterio
    from rasterio.transform import Affine
    big = tmp_path / "big.tif"
    with rasterio.open(region.imagery_start) as src:
        h, w = src.height, src.width
        t = src.transform
        data = np.zeros((src.count, 3 * h, 3 * w), src.dtypes[0])
        data[:, h:2 * h, w:2 * w] = src.read()
        prof = dict(src.profile, height=3 * h, width=3 * w,
                    transform=Affine(t.a, t.b, t.c - w * t.a, t.d, t.e, t.f - h * t.e))
        with rasterio.open(big, "w", **prof) as dst:
            dst.write(data)
            dst.descriptions = src.descriptions
            dst.update_tags(**src.tags())
    del data
    inv = Inventory.from_layer(read_layer(region.inventory, "inventory"))
    peaks, counts = [], []
    for raster in (region.imagery_start, big):
        tracemalloc.start()
        ps = extract_patches([raster], inv, ["B2", "B3"], 64, cache_root=tmp_path / Path(raster).stem)
        cut_windows([raster], inv, ["B2", "B3"], 64, 8, seed=1, glaciers=[1, 2, 3])
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        counts.append(len(ps))
    assert counts[0] == counts[1]
    assert peaks[1] - peaks[0] < 8 * h * w * 4 / 10, peaks


def test_glacier_centred_windows_lie_on_the_glaciers_asked_for(region):
    inv = Inventory.from_layer(read_layer(region.inventory, "inventory"))
    x, y, valid = cut_windows([region.imagery_start], inv, ["B2"], 32, 12, seed=4, glaciers=[3])
    assert x.shape == (12, 1, 32, 32) and all(label.any() for label in y)
    again = cut_windows([region.imagery_start], inv, ["B2"], 32, 12, seed=4, glaciers=[3])
    assert np.array_equal(x, again[0])


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


def test_only_the_outlines_near_a_raster_are_transformed(region, tmp_path, monkeypatch):
    """An inventory of the region's glaciers plus 400 far away (a whole RGI region beside a
    chip): cutting transforms the near ones only, and cuts the same patches."""
    from shapely.affinity import translate
    inv = Inventory.from_layer(read_layer(region.inventory, "inventory"))
    far = [translate(inv.geometries[k % len(inv.geometries)], 50_000 + 3_000 * (k % 20), 60_000 + 3_000 * (k // 20))
           for k in range(400)]
    big = Inventory(list(inv.ids) + [f"far{k}" for k in range(400)], list(inv.geometries) + far, inv.crs)
    transformed = []
    original = Inventory.to_crs

    def counting(self, crs):
        transformed.append(len(self.geometries))
        return original(self, crs)

    monkeypatch.setattr(Inventory, "to_crs", counting)
    ps = extract_patches([region.imagery_start], big.to_crs("EPSG:4326"), ["B2"], 64, cache_root=tmp_path / "a")
    assert max(transformed[1:]) <= len(inv.geometries)
    monkeypatch.undo()
    assert ps.patches == extract_patches([region.imagery_start], inv, ["B2"], 64, cache_root=tmp_path / "b").patches
