"""The segmentation steps through `glacier-mapper`, from another working folder."""
import json
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


def test_an_ensemble_from_the_command_line_with_relative_paths(region, tmp_path):
    """`segment --ensemble` (repeated) with model paths relative to the caller's folder and
    --output-members: the members' rasters and their mean, as the core run with absolute paths."""
    from glacier_mapper_plugin.core.segmentation.model_file import new_model
    from glacier_mapper_plugin.core.segmentation.segment import SegmentOptions, segment
    from tests.conftest import S2_DEM_BANDS
    models = tmp_path / "models"
    for s in (1, 2, 3):
        new_model(models / f"m_seed{s}.gmm", S2_DEM_BANDS, mean=[0.25] * 5 + [2600.0], std=[0.2] * 5 + [400.0],
                  encoder="resnet18", seed=s)
    out = subprocess.run([str(EXE), "segment", "--input", str(region.imagery_end), "--dem", str(region.dem),
                          "--model", "models/m_seed1.gmm", "--ensemble", "models/m_seed2.gmm", "--ensemble",
                          "models/m_seed3.gmm", "--tile-size", "128", "--overlap", "32", "--precision", "fp32",
                          "--backend", "torch", "--output-probability", "maps/mean.tif",
                          "--output-members", "maps/members", "--json"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "an ensemble of 3 members in one network" in out.stderr
    result = json.loads(out.stdout)
    assert result["MEMBERS_USED"] == 3 and [Path(p).name for p in result["MEMBER_PROBABILITIES"]] == [
        "member1_m_seed1.tif", "member2_m_seed2.tif", "member3_m_seed3.tif"]
    core = [tmp_path / "core" / f"{k}.tif" for k in range(3)]
    segment(region.imagery_end, models / "m_seed1.gmm", tmp_path / "core" / "mean.tif", dem_path=region.dem,
            options=SegmentOptions(tile_size=128, overlap=32, precision="fp32", backend="torch"),
            ensemble=[models / "m_seed2.gmm", models / "m_seed3.gmm"], member_paths=core)
    for a, b in [(tmp_path / "maps" / "mean.tif", tmp_path / "core" / "mean.tif"),
                 *zip(result["MEMBER_PROBABILITIES"], core)]:
        with rasterio.open(a) as x, rasterio.open(b) as y:
            np.testing.assert_allclose(x.read(1), y.read(1), atol=1e-6, equal_nan=True)
