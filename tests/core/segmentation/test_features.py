import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from glacier_mapper_plugin.core.segmentation.features import TERRAIN, check, derive, parse


def test_names_parsed_and_unknown_refused():
    assert parse("ndsi, Slope;NDVI") == ["NDSI", "SLOPE", "NDVI"]
    assert parse("terrain") == list(TERRAIN) and parse("") == [] and parse("none") == []
    with pytest.raises(ValueError, match="FEATURES: 'ndxi' is not one of NDSI"):
        parse("ndxi")


def test_missing_source_bands_are_named():
    with pytest.raises(ValueError, match="NDSI needs B3 and B11 or GREEN and SWIR1 among BANDS"):
        check(["NDSI"], ["B2", "B3", "B4", "B8"])
    with pytest.raises(ValueError, match="SLOPE is computed from the DEM"):
        check(["SLOPE"], ["B3", "B11"])
    check(["NDSI", "NDVI", "SLOPE"], ["B3", "B4", "B8", "B11", "DEM"])
    check(["NDVI", "NDWI"], ["RED", "GREEN", "BLUE", "NIR"])  # Landsat names


def test_ndsi_of_ice_and_rock_and_a_dead_pixel():
    green = np.array([[0.6, 0.12, 0.0]], np.float32)
    swir = np.array([[0.05, 0.2, 0.0]], np.float32)
    got = derive(np.stack([green, swir]), ["B3", "B11"], ["NDSI"], 10.0)[0]
    np.testing.assert_allclose(got, [[0.55 / 0.65, -0.08 / 0.32, 0.0]], rtol=1e-6)


@settings(max_examples=25, deadline=None)
@given(st.floats(-1.0, 1.0), st.floats(-1.0, 1.0), st.sampled_from([10.0, 30.0]))
def test_slope_and_aspect_of_a_plane(gx, gy, pixel):
    """A plane rising gx m per m eastwards and gy northwards: slope atan(|g|), aspect the
    downslope direction (clockwise from north), whatever the pixel size."""
    rows, cols = np.mgrid[0:40, 0:40].astype(np.float64)
    dem = 2000 + gx * cols * pixel - gy * rows * pixel  # rows run south
    f = derive(dem[None], ["DEM"], list(TERRAIN), pixel)
    inner = (slice(None), slice(2, -2), slice(2, -2))
    slope, sin_a, cos_a, curvature, relief = f[inner]
    assert np.allclose(slope, np.degrees(np.arctan(np.hypot(gx, gy))), atol=1e-2)
    if np.hypot(gx, gy) > 1e-3:
        down = np.arctan2(-gx, -gy)
        assert np.allclose(sin_a, np.sin(down), atol=1e-3) and np.allclose(cos_a, np.cos(down), atol=1e-3)
    assert np.allclose(curvature, 0, atol=1e-2)
    assert relief.max() <= (abs(gx) + abs(gy)) * 39 * pixel + 1e-2


def test_curvature_sign_and_relief_of_a_hollow():
    rows, cols = np.mgrid[-20:21, -20:21].astype(np.float32)
    bowl = 3000 + 0.5 * (rows ** 2 + cols ** 2)  # a cirque floor: concave
    _, _, _, curvature, relief = derive(bowl[None], ["DEM"], list(TERRAIN), 30.0)
    assert curvature[20, 20] > 0 and relief[20, 20] == pytest.approx(0.5 * 2 * 5 ** 2)  # 300 m: 11 px window


def test_features_travel_with_the_model_and_are_computed_alike_at_inference(small_region, tmp_path):
    """A model trained with FEATURES records them; segment_glaciers' reader derives them from
    the scene exactly as the training patches were derived (same values inside each patch,
    away from the border a terrain window reaches over), and the map is made with them."""
    import contextlib
    import rasterio
    from glacier_mapper_plugin.core.imagery.bands import band_readers
    from glacier_mapper_plugin.core.labels import Inventory
    from glacier_mapper_plugin.core.segmentation.model_file import read_header
    from glacier_mapper_plugin.core.segmentation.patches import extract_patches
    from glacier_mapper_plugin.core.segmentation.segment import SegmentOptions, _PieceReader, segment
    from glacier_mapper_plugin.core.segmentation.train import TrainOptions, train_model
    from glacier_mapper_plugin.core.vector import read_layer
    features = ["NDWI", "NDVI", "SLOPE", "ASPECT_SIN", "RELIEF"]
    inv = Inventory.from_layer(read_layer(small_region.inventory, "inventory"))
    opts = TrainOptions(patch_size=64, encoder="resnet18", epochs=1, batch_size=4, device="cpu", seed=3,
                        features=tuple(features), patch_cache=str(tmp_path / "patches"), keep_patches=True)
    res = train_model([small_region.imagery_start], inv, tmp_path / "m.gmm", small_region.dem, opts)
    header = read_header(res.model)
    assert header.features == features and len(header.mean) == len(header.bands) + len(features)

    cache = extract_patches([small_region.imagery_start], inv, header.bands, 64, small_region.dem,
                            cache_root=tmp_path / "patches", features=features)
    assert cache.bands == header.bands + features
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(rasterio.open(small_region.imagery_start))
        readers = band_readers(stack, src, header.bands, None, str(small_region.dem))
        strip, _ = _PieceReader(readers, header, [(0, [0])], [0], max(src.height, src.width),
                                src.height, src.width)(0)
    mean, std = np.asarray(header.mean)[:, None, None], np.asarray(header.std)[:, None, None]
    scene = strip * std + mean
    from glacier_mapper_plugin.core.segmentation.features import RELIEF_M
    margin = int(RELIEF_M / header.pixel_size_m) // 2 + 2  # how far RELIEF's window reaches beyond a pixel
    n = len(header.bands)
    checked = 0
    for i, p in enumerate(cache.patches[:6]):
        x, _, valid = cache.read(i)
        inner = (slice(margin, 64 - margin), slice(margin, 64 - margin))
        ok = valid[inner]
        for c in range(n + len(features)):
            got = scene[c, p.row:p.row + 64, p.col:p.col + 64][inner][ok]
            want = x[c][inner][ok]
            assert np.allclose(got, want, rtol=1e-4, atol=1e-3 * max(1.0, float(np.abs(want).max()))), cache.bands[c]
            checked += 1
    assert checked == 6 * (n + len(features))
    out = segment(small_region.imagery_start, res.model, tmp_path / "p.tif", dem_path=small_region.dem,
                  options=SegmentOptions(tile_size=128, overlap=32, precision="fp32"))
    with rasterio.open(out.probability) as src:
        assert np.isfinite(src.read(1)).mean() > 0.9


def test_a_feature_without_its_bands_is_refused_before_any_work(small_region, tmp_path):
    from glacier_mapper_plugin.core.labels import Inventory
    from glacier_mapper_plugin.core.segmentation.train import TrainOptions, train_model
    from glacier_mapper_plugin.core.vector import read_layer
    inv = Inventory.from_layer(read_layer(small_region.inventory, "inventory"))
    with pytest.raises(ValueError, match="FEATURES: NDSI needs B3 and B11"):
        train_model([small_region.imagery_start], inv, tmp_path / "m.gmm", small_region.dem,
                    TrainOptions(patch_size=64, encoder="resnet18", epochs=1, device="cpu", features=("NDSI",),
                                 patch_cache=str(tmp_path / "patches")))
    assert not (tmp_path / "m.gmm").exists() and not (tmp_path / "patches").exists()
