"""The segmentation steps through `glacier-mapper`, from another working folder."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio

EXE = Path(sys.executable).parent / "glacier-mapper"


def test_float32_dns_segment_like_the_uint16_scene(region, untrained_model, tmp_path):
    """The region's scene as uint16 DNs and as a Float32 GeoTIFF holding the same DNs (as
    other tools write after a reprojection): the same probability, and the log says how the
    float bands were read."""
    from tests.core.imagery.test_bands import _float_copy
    floats = _float_copy(region.imagery_end, tmp_path / "scene_float32.tif")
    probs = {}
    for name, scene in (("uint16", region.imagery_end), ("float32", floats)):
        out = subprocess.run([str(EXE), "segment", "--input", str(scene), "--dem", str(region.dem),
                              "--model", str(untrained_model), "--tile-size", "256", "--precision", "fp32",
                              "--output-probability", f"{name}.tif"],
                             capture_output=True, text=True, cwd=tmp_path, timeout=600)
        assert out.returncode == 0, out.stderr
        with rasterio.open(tmp_path / f"{name}.tif") as src:
            probs[name] = src.read(1)
        if name == "float32":
            assert "hold digital numbers" in out.stderr
    np.testing.assert_allclose(probs["float32"], probs["uint16"], atol=1e-5, equal_nan=True)


def test_the_probability_is_optional_when_the_mask_is_asked_for(region, untrained_model, tmp_path):
    """`segment` with only --output-mask (and polygons): the same mask as with the probability,
    no probability file and no hidden scratch left; with neither, an error naming both."""
    common = [str(EXE), "segment", "--input", str(region.imagery_end), "--dem", str(region.dem), "--model",
              str(untrained_model), "--tile-size", "128", "--overlap", "16", "--device", "cpu"]
    both = subprocess.run(common + ["--output-probability", str(tmp_path / "p.tif"), "--output-mask",
                                    str(tmp_path / "with.tif")], capture_output=True, text=True, timeout=600)
    assert both.returncode == 0, both.stderr
    alone = tmp_path / "alone"  # a folder the run makes: the hidden probability goes there too
    only = subprocess.run(common + ["--output-mask", str(alone / "mask.tif"), "--output-polygons",
                                    str(alone / "glaciers.gpkg")], capture_output=True, text=True, timeout=600)
    assert only.returncode == 0, only.stderr
    assert sorted(p.name for p in alone.iterdir()) == ["glaciers.gpkg", "mask.tif"]
    with rasterio.open(tmp_path / "with.tif") as a, rasterio.open(alone / "mask.tif") as b:
        assert np.array_equal(a.read(), b.read())
    none = subprocess.run(common, capture_output=True, text=True, timeout=600)
    assert none.returncode != 0 and "OUTPUT_PROBABILITY and OUTPUT_MASK are both skipped" in none.stderr
    assert "Traceback" not in none.stderr
