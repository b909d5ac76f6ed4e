import numpy as np
import pytest
import rasterio

from glacier_mapper_plugin.core.imagery import sentinel2 as s2
from glacier_mapper_plugin.core.imagery.bands import (band_readers, canonical, decoder_for, match_bands,
                                              offset_decision, parse_mapping)

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
            index = match_bands(src.descriptions, ["B8"])
            dec = decoder_for(src, 4, "B8", offset_decision(src, index)[0])
            v, invalid = dec(src.read(4))
            scl = src.read(6)
            vals.append(np.median(v[(scl == 5) & ~invalid]))
            assert (invalid == (src.read(4) == 0)).all()
    assert vals[0] == pytest.approx(vals[1], abs=0.02)
    assert 0.1 < vals[0] < 0.4


def _local_copy(src_path, dst, offset_in_dn, declare):
    """The region's scene as a user's GeoTIFF: DNs with or without the +1000 offset, and the
    convention declared as `declare`: 'gdal' (band scale/offset), 'tag' (BOA_ADD_OFFSET),
    'wrong tag' (BOA_ADD_OFFSET saying the opposite), or 'none'."""
    with rasterio.open(src_path) as src:
        dn = src.read()
        profile = src.profile
        source_offset = s2.boa_offset(src.tags()["PROCESSING_BASELINE"]) != 0
        descriptions = src.descriptions
    optical = dn[:5].astype(np.int32)
    shift = (1000 if offset_in_dn else 0) - (1000 if source_offset else 0)
    optical[optical > 0] += shift
    dn[:5] = np.clip(optical, 0, 65535)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(dn)
        out.descriptions = descriptions
        if declare == "gdal":
            out.scales = (1e-4,) * 5 + (1.0,)
            out.offsets = (-0.1 if offset_in_dn else 0.0,) * 5 + (0.0,)
        elif declare in ("tag", "wrong tag"):
            says = offset_in_dn if declare == "tag" else not offset_in_dn
            out.update_tags(BOA_ADD_OFFSET=str(-1000 if says else 0))
    return dst


@pytest.mark.parametrize("offset_in_dn", [True, False])
@pytest.mark.parametrize("declare", ["gdal", "tag", "wrong tag", "none"])
def test_local_geotiff_conventions_decode_to_true_reflectance(region, tmp_path, offset_in_dn, declare):
    from contextlib import ExitStack
    path = _local_copy(region.imagery_end, tmp_path / "scene.tif", offset_in_dn, declare)
    with rasterio.open(region.imagery_end) as src:
        truth = s2.to_reflectance(src.read([1, 2, 3, 4, 5]), src.tags()["PROCESSING_BASELINE"])
    log = []

    class Log:
        def info(self, m):
            log.append(m)
        warning = info

    with ExitStack() as stack, rasterio.open(path) as src:
        readers = band_readers(stack, src, ["B2", "B3", "B4", "B8", "B12"], progress=Log())
        decoded = np.stack([dec(ds.read(b))[0] for ds, b, dec in readers])
    ok = np.isfinite(truth).all(axis=0)
    assert np.abs(decoded[:, ok] - truth[:, ok]).max() <= 0.005
    message = " ".join(log)
    assert ("offset in DNs, decided by" if offset_in_dn else "no offset in DNs, decided by") in message
    if declare == "wrong tag":
        assert "decided by pixels" in message and "following the pixels" in message


def _float_copy(src_path, dst, as_reflectance=False, scale=1.0):
    """The region's scene as a Float32 GeoTIFF, as other tools write one after a reprojection
    or a mosaic: the same DNs as floats (NaN no data), or already decoded to reflectance."""
    with rasterio.open(src_path) as src:
        dn = src.read().astype(np.float32)
        profile = dict(src.profile, dtype="float32", nodata=float("nan"))
        descriptions, tags = src.descriptions, src.tags()
    optical = dn[:5]
    optical[optical == 0] = np.nan
    if as_reflectance:
        optical[:] = (optical + s2.boa_offset(tags["PROCESSING_BASELINE"])) / 10000.0
    optical *= scale
    with rasterio.open(dst, "w", **profile) as out:
        out.write(dn)
        out.descriptions = descriptions
        out.update_tags(**tags)
    return dst


def _decoded(path, band=4):
    from contextlib import ExitStack
    with ExitStack() as stack, rasterio.open(path) as src:
        (reader, b, dec), = band_readers(stack, src, [WANT[band - 1]])
        v, invalid = dec(reader.read(b))
        v[invalid] = np.nan
        return v


def test_float32_dns_decode_like_the_uint16_scene(region, tmp_path):
    """The same DNs as uint16, as Float32, and the same scene already decoded to Float32
    reflectance: one reflectance (the float DNs were once decoded with scale 1: 7.68 km2
    of glacier instead of 6.49)."""
    ref = _decoded(region.imagery_end)
    for name, kw in (("dn.tif", {}), ("refl.tif", dict(as_reflectance=True))):
        got = _decoded(_float_copy(region.imagery_end, tmp_path / name, **kw))
        np.testing.assert_allclose(got, ref, atol=1e-6, equal_nan=True)
    assert 0.05 < np.nanmedian(ref) < 0.6


def test_float_values_that_are_neither_are_refused(region, tmp_path):
    path = _float_copy(region.imagery_end, tmp_path / "odd.tif", as_reflectance=True, scale=20.0)
    with pytest.raises(ValueError, match="INPUT: the float bands .* look neither like surface reflectance"):
        _decoded(path)
