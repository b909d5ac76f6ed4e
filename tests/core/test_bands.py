import numpy as np
import pytest
import rasterio

from glacier_mapper_plugin.core.bands import canonical, decoder_for, match_bands, parse_mapping

WANT = ["B2", "B3", "B4", "B8", "B12", "DEM"]


def test_canonical_names():
    assert [canonical(n) for n in ("B02", "b8a", "B12", "dem", "Elevation", "B4 (red)", None)] == \
        ["B2", "B8A", "B12", "DEM", "DEM", "B4", ""]


def test_match_by_description_and_external_dem():
    desc = ("B2", "B3", "B4", "B8", "B12", "SCL")
    assert match_bands(desc, WANT, external=("DEM",)) == {"B2": 1, "B3": 2, "B4": 3, "B8": 4, "B12": 5, "DEM": None}


def test_mapping_overrides_descriptions():
    got = match_bands((None,) * 6, WANT, parse_mapping("B2=3, B3=2,B4=1,B8=4,B12=5,DEM=6"))
    assert got["B2"] == 3 and got["DEM"] == 6


def test_missing_band_error_names_it():
    with pytest.raises(ValueError, match="no band for DEM.*give a DEM raster"):
        match_bands(("B2", "B3", "B4", "B8", "B12"), WANT)
    with pytest.raises(ValueError, match="BANDS: B2=9 but the raster has 6 bands"):
        match_bands((None,) * 6, WANT, {"B2": 9})
    with pytest.raises(ValueError, match="NAME=NUMBER"):
        parse_mapping("B2:1")


def test_both_baselines_decode_to_the_same_reflectance(region):
    """Start scene (02.14, no offset) and end scene (05.09, -1000) over stable rock."""
    vals = []
    for path in (region.imagery_start, region.imagery_end):
        with rasterio.open(path) as src:
            dec = decoder_for(src, 4, "B8")
            v, invalid = dec(src.read(4))
            scl = src.read(6)
            vals.append(np.median(v[(scl == 5) & ~invalid]))
            assert (invalid == (src.read(4) == 0)).all()
    assert vals[0] == pytest.approx(vals[1], abs=0.02)
    assert 0.1 < vals[0] < 0.4
