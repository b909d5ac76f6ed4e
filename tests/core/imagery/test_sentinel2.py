import numpy as np
import pytest

from glacier_mapper_plugin.core.imagery import sentinel2 as s2


@pytest.mark.parametrize("baseline, offset", [("02.14", 0), ("03.01", 0), ("04.00", -1000),
                                              ("05.09", -1000), (4.0, -1000)])
def test_boa_offset(baseline, offset):
    assert s2.boa_offset(baseline) == offset


def test_unknown_baseline_is_an_error():
    with pytest.raises(ValueError, match="processing baseline"):
        s2.boa_offset(None)


def test_round_trip_and_nodata():
    refl = np.array([[0.0, 0.25, np.nan, 1.2]], np.float32)
    for baseline in ("02.14", "05.09"):
        dn = s2.to_dn(refl, baseline)
        assert dn.dtype == np.uint16 and dn[0, 2] == 0
        back = s2.to_reflectance(dn, baseline)
        assert np.isnan(back[0, 2])
        np.testing.assert_allclose(back[0, [0, 1, 3]], refl[0, [0, 1, 3]], atol=1e-4)
    # Same surface, baseline 05.09: DN is 1000 higher.
    assert s2.to_dn(refl, "05.09")[0, 1] - s2.to_dn(refl, "02.14")[0, 1] == 1000


def test_dark_pixel_never_becomes_nodata():
    """Reflectance 0 under an old baseline is DN 0 = no data; it is kept as DN 1."""
    assert s2.to_dn(np.array([0.0]), "02.14")[0] == 1
