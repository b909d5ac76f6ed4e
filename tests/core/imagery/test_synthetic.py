import numpy as np
import pytest
import rasterio

from glacier_mapper_plugin.core.imagery import sentinel2 as s2
from glacier_mapper_plugin.core.imagery.synthetic import SPECTRA, make_region, retreat
from glacier_mapper_plugin.core.vector import read_layer


def _read(path):
    with rasterio.open(path) as src:
        return src.read(), src.profile, src.tags(), src.descriptions


def test_files_georeferenced_and_described(region):
    for path in (region.imagery_start, region.imagery_end):
        data, prof, tags, desc = _read(path)
        assert prof["crs"].to_epsg() == 32632
        assert prof["transform"].a == 10.0 and prof["transform"].e == -10.0
        assert prof["dtype"] == "uint16" and prof["nodata"] == 0
        assert desc == ("B2", "B3", "B4", "B8", "B12", "SCL")
        assert tags["DATE"] in (region.start_date.isoformat(), region.end_date.isoformat())
        assert "PROCESSING_BASELINE" in tags and "SCENE_ID" in tags
        assert prof["tiled"] and prof["compress"] == "deflate"
    dem, prof, tags, desc = _read(region.dem)
    assert desc == ("DEM",) and prof["dtype"] == "float32" and tags["UNITS"] == "m"
    assert 1500 < dem.min() < dem.max() < 4500


def test_baseline_offset_differs_between_dates_and_decodes_to_same_surface(region):
    """2015 archive scene: baseline 02.14 (no offset); 2023: 05.09 (-1000)."""
    refl = {}
    for key, path in (("start", region.imagery_start), ("end", region.imagery_end)):
        data, prof, tags, _ = _read(path)
        assert int(tags["BOA_ADD_OFFSET"]) == s2.boa_offset(tags["PROCESSING_BASELINE"])
        refl[key] = s2.to_reflectance(data[:5], tags["PROCESSING_BASELINE"])
        with rasterio.open(path) as src:
            assert src.offsets[0] == pytest.approx(int(tags["BOA_ADD_OFFSET"]) / 10000)
            assert src.scales[0] == pytest.approx(1e-4)
    assert refl["start"].shape == refl["end"].shape
    # Snow/ice on both dates decodes to bright visible reflectance whatever the offset.
    for key, path in (("start", region.imagery_start), ("end", region.imagery_end)):
        scl = _read(path)[0][5]
        assert np.nanmedian(refl[key][2][scl == 11]) > 0.3
        assert np.nanmedian(refl[key][2][scl == 4]) < 0.12


def test_scl_consistent_with_bands(region):
    for path in (region.imagery_start, region.imagery_end):
        data = _read(path)[0]
        bands, scl = data[:5], data[5]
        nodata = (bands == 0).all(axis=0)
        assert nodata.any(), "a no-data strip is expected"
        assert np.array_equal(nodata, scl == 0)
        assert not ((bands == 0).any(axis=0) & ~nodata).any(), "partial no-data in a pixel"
        classes = set(np.unique(scl).tolist())
        assert {0, 3, 4, 5, 8, 9, 11} <= classes
        # Clouds are bright in B12, snow is dark in B12: the classic NDSI separation.
        assert np.median(bands[4][scl == 9]) > 3000
        assert np.median(bands[4][scl == 11]) < 1800


def test_truth_and_inventory_agree(region):
    inv = read_layer(region.inventory, "inventory")
    assert len(inv.records) == region.n_glaciers == 8
    assert {"id", "name", "area_km2", "date", "year", "true_rate_pct_yr"} <= set(inv.records[0])
    truth0 = _read(region.truth_start)[0][0]
    truth1 = _read(region.truth_end)[0][0]
    years = region.end_date.year - region.start_date.year
    for i, rec in enumerate(inv.records, start=1):
        n0, n1 = (truth0 == i).sum(), (truth1 == i).sum()
        # Pixel areas on the UTM grid match the ellipsoidal polygon areas to UTM scale error.
        assert rec["area_km2"] == pytest.approx(n0 * 100 / 1e6, rel=2e-3)
        assert rec["true_rate_pct_yr"] == pytest.approx((n1 - n0) / n0 / years * 100, abs=0.02)
        assert -3.6 < rec["true_rate_pct_yr"] < -0.4
        assert inv.geometries[i - 1].area == pytest.approx(n0 * 100.0)
    # End-year glaciers lie inside their start-year outlines: retreat, no advance.
    assert not ((truth1 > 0) & (truth1 != truth0)).any()
    assert any(r["debris"] for r in inv.records)
    rate = (sum(r["true_area_end_km2"] for r in inv.records) / sum(r["area_km2"] for r in inv.records)
            - 1) / years * 100
    assert rate == pytest.approx(region.true_regional_rate_pct_yr, abs=1e-3)


def test_seed_is_deterministic(tmp_path, region):
    again = make_region(tmp_path / "again", seed=42)
    other = make_region(tmp_path / "other", seed=7)
    for name in ("imagery_start", "imagery_end", "dem", "truth_end"):
        a = _read(getattr(region, name))[0]
        assert np.array_equal(a, _read(getattr(again, name))[0])
        assert not np.array_equal(a, _read(getattr(other, name))[0])


def test_retreat_removes_lowest_pixels_first():
    labels = np.array([[1, 1, 1, 1], [0, 2, 2, 0]])
    dem = np.array([[4.0, 3.0, 2.0, 1.0], [0, 5.0, 6.0, 0]])
    end = retreat(labels, dem, {1: -25.0, 2: -50.0}, years=1)
    assert end.tolist() == [[1, 1, 1, 0], [0, 0, 2, 0]]


def test_spectra_plausible():
    snow, ice, rock = (np.array(SPECTRA[k]) for k in ("snow", "ice", "rock"))
    ndsi = lambda s: (s[1] - s[4]) / (s[1] + s[4])  # noqa: E731 (green vs SWIR)
    assert ndsi(snow) > 0.8 and ndsi(ice) > 0.8 and ndsi(rock) < 0


@pytest.mark.parametrize("kwargs, word", [(dict(size_km=0.1), "SIZE_KM"),
                                          (dict(n_glaciers=0), "N_GLACIERS"),
                                          (dict(start_year=2023, end_year=2015), "END_YEAR"),
                                          (dict(size_km=1.0, n_glaciers=200), "N_GLACIERS")])
def test_bad_parameters_named(tmp_path, kwargs, word):
    with pytest.raises(ValueError, match=word):
        make_region(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())
