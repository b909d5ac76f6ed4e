"""Tier 4: real Sentinel-2 L2A files from ../shared/data (skipped when absent)."""
import numpy as np
import rasterio
from rasterio.enums import Resampling

from glacier_mapper_plugin.core.imagery import sentinel2 as s2
from glacier_mapper_plugin.core.imagery.synthetic import SPECTRA


def _ndvi(b4, b8):
    return (b8 - b4) / (b8 + b4)


def test_real_l2a_classes_and_spectra_match_synthetic(shared_data):
    folder = shared_data / "sen2r_barbellino"
    with rasterio.open(folder / "S2A2A_20190723_022_Barbellino_BOA_10.tif") as src:
        # sen2r order B1..B8, B8A, B11, B12: B2, B3, B4, B8, B12 are bands 2, 3, 4, 8, 11.
        dn = src.read([2, 3, 4, 8, 11])
        shape = (src.height, src.width)
    with rasterio.open(folder / "S2A2A_20190723_022_Barbellino_SCL_10.tif") as src:
        assert src.res == (20.0, 20.0)
        scl = src.read(1, out_shape=shape, resampling=Resampling.nearest)
    assert set(np.unique(scl)) <= set(s2.SCL)
    refl = s2.to_reflectance(dn, "02.13")  # 2019 archive product: no offset
    assert np.nanmax(refl) < 1.5 and np.nanmin(refl) >= 0
    # Real vegetation is far greener in NIR than real bare ground: so are our spectra.
    veg_real = np.nanmedian(_ndvi(refl[2], refl[3])[scl == 4])
    bare_real = np.nanmedian(_ndvi(refl[2], refl[3])[scl == 5])
    veg_syn = _ndvi(SPECTRA["vegetation"][2], SPECTRA["vegetation"][3])
    bare_syn = _ndvi(SPECTRA["rock"][2], SPECTRA["rock"][3])
    assert veg_real > 0.4 and veg_syn > 0.4
    assert bare_real < veg_real and bare_syn < veg_syn
