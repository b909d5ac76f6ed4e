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
