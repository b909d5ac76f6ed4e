"""The +1000 offset decision: each catalog's metadata as published (field values copied from
real items, named below), the pixel rule on synthetic and real Sentinel-2 L2A pixels, and
the combination."""
import glob

import numpy as np
import pytest
import rasterio
from hypothesis import assume, given, settings, strategies as st

from glacier_mapper_plugin.core.imagery import reflectance as rf
from glacier_mapper_plugin.core.imagery import sentinel2 as s2

# Earth Search v1 sentinel-2-l2a, S2A_39QTA_20230628_0_L2A (geopython/eodm tests/data/test_data.py)
ES_V1_PROPS = {"s2:processing_baseline": "05.09", "earthsearch:boa_offset_applied": True,
               "s2:product_uri": "S2A_MSIL2A_20230628T070631_N0509_R106_T39QTA_20230628T113955.SAFE"}
ES_V1_BAND = {"nodata": 0, "data_type": "uint16", "bits_per_sample": 15, "spatial_resolution": 10,
              "scale": 0.0001, "offset": -0.1}
# Earth Search sentinel-2-c1-l2a, S2B_T38XNF_20250422T091553_L2A (philvarner/stac-factory fixtures)
C1_PROPS = {"s2:processing_baseline": "05.11", "s2:product_type": "S2MSI2A"}
C1_BAND = {"nodata": 0, "data_type": "uint16", "spatial_resolution": 10, "scale": 0.0001, "offset": -0.1}
# Planetary Computer sentinel-2-l2a: assets carry eo:bands, no raster:bands
PC_PROPS = {"s2:processing_baseline": "05.10", "platform": "Sentinel-2B", "s2:mgrs_tile": "32UPC"}


@pytest.mark.parametrize("props, band, expected, source", [
    (ES_V1_PROPS, ES_V1_BAND, False, "earthsearch:boa_offset_applied=true"),
    ({**ES_V1_PROPS, "earthsearch:boa_offset_applied": False}, ES_V1_BAND, True, "earthsearch:boa_offset_applied=false"),
    ({**ES_V1_PROPS, "earthsearch:boa_offset_applied": False, "s2:processing_baseline": "02.14"}, ES_V1_BAND,
     False, "baseline 02.14"),
    (C1_PROPS, C1_BAND, True, "raster:bands offset -0.1"),
    (PC_PROPS, None, True, "s2:processing_baseline 05.10"),
    ({**PC_PROPS, "s2:processing_baseline": "03.01"}, None, False, "s2:processing_baseline 03.01"),
    ({}, None, None, "no offset metadata"),
])
def test_each_catalogs_metadata(props, band, expected, source):
    scale, offset_in_dn, said = rf.stac_metadata(props, band)
    assert scale == pytest.approx(1e-4)
    assert offset_in_dn is expected and source in said


def _scene(offset, rng, dark=True, n=4000):
    """Five bands of DNs: ice (B12 ~0.025) and rock; `dark` adds shadows and a lake."""
    refl = np.stack([rng.uniform(0.3, 0.5, n), rng.uniform(0.3, 0.5, n), rng.uniform(0.25, 0.45, n),
                     rng.uniform(0.2, 0.4, n), rng.uniform(0.15, 0.25, n)])
    if dark:
        refl[4, : n // 3] = rng.uniform(0.005, 0.05, n // 3)       # ice and snow in SWIR
        refl[:, n // 3: n // 3 + n // 20] *= 0.1                      # shadow
    return list(np.rint(refl * 10000 + (1000 if offset else 0)).astype(np.uint16))


def test_pixel_rule_on_synthetic_windows():
    rng = np.random.default_rng(0)
    assert rf.pixel_evidence(_scene(False, rng))[0] is False
    assert rf.pixel_evidence(_scene(True, rng))[0] is True
    # Bright window without dark targets: cannot tell either way.
    assert rf.pixel_evidence(_scene(False, rng, dark=False))[0] is None
    assert rf.pixel_evidence(_scene(True, rng, dark=False))[0] is None
    # Too few valid pixels; masked pixels do not count.
    few = _scene(False, rng, n=50)
    assert rf.pixel_evidence(few)[0] is None and rf.pixel_evidence(few)[2] == 50
    valid = np.zeros(4000, bool)
    assert rf.pixel_evidence(_scene(False, rng), valid)[0] is None


def test_decision_follows_pixels_over_wrong_metadata():
    rng = np.random.default_rng(1)
    d = rf.decide(True, "earthsearch:boa_offset_applied=false", _scene(False, rng))
    assert not d.offset_in_dn and d.decided_by == "pixels" and d.disagreement and d.offset == 0
    d = rf.decide(True, "raster:bands offset -0.1", _scene(True, rng))
    assert d.offset_in_dn and d.decided_by == "metadata+pixels" and d.offset == -1000
    d = rf.decide(False, "earthsearch:boa_offset_applied=true", _scene(True, rng, dark=False))
    assert not d.offset_in_dn and d.decided_by == "metadata" and d.pixels is None
    assert d.tags()["OFFSET_PIXELS"] == "undecided"
    d = rf.decide(None, "no offset metadata", _scene(True, rng))
    assert d.offset_in_dn and d.decided_by == "pixels"
    d = rf.decide(None, "no offset metadata", _scene(True, rng, dark=False))
    assert d.decided_by == "assumed" and not d.offset_in_dn


def test_real_l2a_pixels_barbellino(shared_data):
    """sen2r's Barbellino L2A (2017 and 2019, baseline 02.xx: no offset): decided 'no offset'
    from the pixels; the same DNs + 1000 (as baseline >= 04.00 delivers them): 'offset'."""
    for path in sorted(glob.glob(str(shared_data / "sen2r_barbellino" / "S2A2A_*_BOA_10.tif"))):
        with rasterio.open(path) as src:
            dn = src.read()
        with rasterio.open(path.replace("_BOA_", "_SCL_")) as src:
            scl = src.read(1, out_shape=dn.shape[1:], resampling=rasterio.enums.Resampling.nearest)
        bands = [dn[1], dn[2], dn[3], dn[7], dn[10]]  # B2 B3 B4 B8 B12 of B1-B8, B8A, B11, B12
        clear = ~np.isin(scl, s2.SCL_MASKED)
        assert rf.pixel_evidence(bands, clear)[0] is False
        assert rf.pixel_evidence([b + np.uint16(1000) * (b > 0) for b in bands], clear)[0] is True


def test_real_glacier_chips_are_never_decided_wrong(shared_data):
    """snowicesen's glacier-only chips (2017/2018, no offset; B02, B8A, B08 only, no SWIR, so
    little that is dark): decided right or left undecided, never called 'offset'."""
    verdicts = []
    for path in sorted(glob.glob(str(shared_data / "snowicesen_s2" / "*.tif"))):
        with rasterio.open(path) as src:
            dn = src.read()
        verdict = rf.pixel_evidence(list(dn))[0]
        shifted = rf.pixel_evidence([b + np.uint16(1000) * (b > 0) for b in dn])[0]
        assert verdict is not True and shifted is not False
        verdicts.append(verdict)
    assert verdicts.count(False) >= 2  # the chips with shadowed or dirty ice are decided


# --------------------------------------------------------------------------- the rule's thresholds

SURFACES = {  # SCL class, reflectance range of (B2, B3, B4, B8) and of B12
    "snow_ice": (11, (0.3, 0.9), (0.005, 0.06)),
    "rock": (5, (0.06, 0.3), (0.1, 0.35)),
    "vegetation": (4, (0.02, 0.07), (0.08, 0.15)),
    "water": (6, (0.0, 0.08), (-0.04, 0.01)),       # slightly negative SWIR, as Sen2Cor leaves it
    "shadow": (2, (0.0, 0.05), (-0.03, 0.02)),
    "cloud_shadow": (3, (0.0, 0.06), (-0.03, 0.02)),
}


def _mixture(shares, offset, seed, n=6000):
    rng = np.random.default_rng(seed)
    counts = np.floor(np.asarray(shares) / max(sum(shares), 1e-9) * n).astype(int)
    refl, scl = [], []
    for (code, vis, swir), k in zip(SURFACES.values(), counts):
        refl.append(np.vstack([rng.uniform(*vis, (4, k)), rng.uniform(*swir, (1, k))]))
        scl.append(np.full(k, code))
    refl, scl = np.hstack(refl), np.concatenate(scl)
    dn = np.clip(np.rint(refl * 10000 + (1000 if offset else 0)), 1, 65535).astype(np.uint16)
    return list(dn), scl


share = st.floats(0.0, 1.0)


@settings(max_examples=60, deadline=None)
@given(shares=st.tuples(*[share] * len(SURFACES)), offset=st.booleans(), seed=st.integers(0, 10 ** 6))
def test_right_metadata_is_never_overruled_by_any_mix_of_surfaces(shares, offset, seed):
    """Whatever share of the scene is water and shadow (negative SWIR), correct metadata stands."""
    assume(sum(shares) > 0.05)
    bands, scl = _mixture(shares, offset, seed)
    d = rf.decide(offset, "test", bands, rf.evidence_mask(scl))
    assert d.offset_in_dn is offset, d.describe()


@settings(max_examples=60, deadline=None)
@given(ice=st.floats(0.3, 1.0), rest=st.tuples(*[share] * (len(SURFACES) - 1)), offset=st.booleans(),
       seed=st.integers(0, 10 ** 6))
def test_wrong_metadata_is_overruled_where_ice_and_snow_show_the_truth(ice, rest, offset, seed):
    """With glacier ice and snow on at least a third of the land pixels (and land on a fifth of
    the 6000 pixels: more than STRONG_PIXELS), the pixels' evidence is strong and wrong metadata
    is overruled, with the numbers in the description."""
    land = ice + rest[0] + rest[1]  # snow/ice, rock, vegetation
    assume(ice / land >= 0.34 and land / (ice + sum(rest)) >= 0.2)
    bands, scl = _mixture((ice, *rest), offset, seed)
    d = rf.decide(not offset, "test", bands, rf.evidence_mask(scl))
    assert d.offset_in_dn is offset and d.overruled and "strong evidence" in d.describe(), d.describe()


def test_weak_contrary_evidence_is_reported_not_followed():
    rng = np.random.default_rng(1)
    bands, scl = _mixture((0.0, 1.0, 0.0, 0.0, 0.0, 0.0), True, 2)   # rock only, offset in DNs
    bands = [b.copy() for b in bands]
    few = rng.choice(bands[0].size, int(0.02 * bands[0].size), replace=False)
    bands[4][few] = 850                                               # 2 % odd values below 900
    d = rf.decide(True, "raster:bands offset -0.1", bands, rf.evidence_mask(scl))
    assert d.offset_in_dn is True and d.decided_by == "metadata" and d.disagreement and not d.overruled
    assert "weak evidence" in d.describe() and "2.00 % of a band below DN 900" in d.describe()
