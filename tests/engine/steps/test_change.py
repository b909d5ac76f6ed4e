"""The area-change step through `glacier-mapper`, from another working folder."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

EXE = Path(sys.executable).parent / "glacier-mapper"


def _hef_predictions(outline_path, folder):
    """Predictions over Hintereisferner on a 10 m UTM 32N grid: the start without a date tag
    (its year must come from the inventory), the end (2023) two pixels smaller all round."""
    from rasterio import features
    from rasterio.transform import from_origin
    from scipy import ndimage

    from glacier_mapper_plugin.core.labels import Inventory
    from glacier_mapper_plugin.core.vector import read_layer
    layer = read_layer(outline_path)
    geom = Inventory([1], layer.geometries, layer.crs).to_crs("EPSG:32632").geometries[0]
    x0, y0, x1, y1 = geom.bounds
    transform = from_origin(x0 // 10 * 10 - 200, y1 // 10 * 10 + 200, 10, 10)
    shape = (int((y1 - y0) // 10) + 42, int((x1 - x0) // 10) + 42)
    start = features.rasterize([(geom, 1)], out_shape=shape, transform=transform, dtype="uint8")
    end = ndimage.binary_erosion(start, iterations=2).astype("uint8")
    paths = []
    for name, arr, date in (("start.tif", start, None), ("end.tif", end, "2023-08-28")):
        with rasterio.open(folder / name, "w", driver="GTiff", width=shape[1], height=shape[0], count=1,
                           dtype="uint8", crs="EPSG:32632", transform=transform) as dst:
            dst.write(arr, 1)
            dst.set_band_description(1, "glacier mask")
            if date:
                dst.update_tags(DATE=date)
        paths.append(folder / name)
    return paths


def test_rgi7_rgi6_and_glims_need_no_id_or_date_field(shared_data, tmp_path):
    """Hintereisferner as RGI 7.0 (3D polygon, rgi_id, src_date as an ISO datetime), as
    RGI 6.0 (RGIId, BgnDate 20030799) and as a GLIMS download (line types; two analyses) with
    ID_FIELD and DATE_FIELD left empty: each table row
    carries the inventory's own id, the start year comes from the inventory's date (the day
    unknown in RGI 6: the middle of July), and the areas and rates agree."""
    from glacier_mapper_plugin.core.vector import read_layer
    folder = shared_data / "oggm_hef"
    start, end = _hef_predictions(folder / "Hintereisferner_RGI6.shp", tmp_path)
    rows = {}
    from tests.published import glims_extract
    glims = glims_extract(shared_data, tmp_path)
    for name, outline, extra in (("rgi7", folder / "rgi7g_hef.shp", []), ("rgi6", folder / "Hintereisferner_RGI6.shp", []),
                                 ("glims", glims, []), ("glims_2003_07_01", glims, ["--glims-analysis", "2003-07-01"])):
        out = subprocess.run([str(EXE), "area-change", "--inventory", str(outline), "--start", "start.tif",
                              "--end", "end.tif", "--trim-percent", "0", "--output", f"{name}.gpkg", "--json", *extra],
                             capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert out.returncode == 0, out.stderr
        assert "glacier ids from its column" in out.stderr and "dates from its column" in out.stderr
        rows[name] = read_layer(tmp_path / f"{name}.gpkg").records[0]
    # GLIMS as distributed: glac_bound minus intrnl_rock of the newest analysis is RGI 7's outline
    assert rows["glims"]["glac_id"] == "G010752E46802N" and "GLIMS: 1 outline(s)" in out.stderr
    assert rows["glims"]["area_start_km2"] == pytest.approx(rows["rgi7"]["area_start_km2"], rel=1e-6)
    assert rows["glims"]["year_start"] == rows["rgi7"]["year_start"]
    assert rows["glims"]["rate_km2_yr"] == pytest.approx(rows["rgi7"]["rate_km2_yr"], rel=1e-6)
    # the analysis nearest 1 July 2003 is the RGI 6 outline, dated 15 July
    assert rows["glims_2003_07_01"]["area_start_km2"] == pytest.approx(rows["rgi6"]["area_start_km2"], rel=1e-6)
    assert rows["rgi7"]["rgi_id"] == "RGI2000-v7.0-G-11-03116" and rows["rgi6"]["RGIId"] == "RGI60-11.00897"
    assert rows["rgi7"]["year_start"] == pytest.approx(2003 + 210 / 365, abs=1e-6)
    assert rows["rgi6"]["year_start"] == pytest.approx(2003 + 196.5 / 365, abs=1e-6)
    assert rows["rgi7"]["area_start_km2"] == pytest.approx(rows["rgi6"]["area_start_km2"], rel=2e-3)
    assert rows["rgi7"]["rate_km2_yr"] == pytest.approx(rows["rgi6"]["rate_km2_yr"], rel=0.01)


def test_relative_paths_on_the_command_line(tmp_path):
    """`glacier-mapper area-change` from a data folder with relative names: same result as
    with absolute paths, outputs beside the data."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from glacier_mapper_plugin.core.vector import read_layer
    from tests.core.change.test_area_change import write_case
    inv, start, end = write_case(tmp_path)
    exe = Path(sys.executable).parent / "glacier-mapper"
    runs = {}
    for form, names in (("relative", ("inv.gpkg|layername=glaciers", "inv_s.tif", "inv_e.tif", "rel.gpkg")),
                        ("absolute", (f"{inv}|layername=glaciers", start, end, str(tmp_path / "abs.gpkg")))):
        out = subprocess.run([str(exe), "area-change", "--inventory", names[0], "--start", names[1], "--end", names[2],
                              "--trim-percent", "0", "--output", names[3], "--json"],
                             capture_output=True, text=True, cwd=tmp_path if form == "relative" else "/", timeout=300)
        assert out.returncode == 0, out.stderr
        runs[form] = (json.loads(out.stdout), read_layer(tmp_path / Path(names[3]).name).records)
    assert runs["relative"][0]["OUTPUT"] == str(tmp_path / "rel.gpkg")
    assert runs["relative"][0]["REGIONAL_RATE"] == runs["absolute"][0]["REGIONAL_RATE"]
    assert runs["relative"][1] == runs["absolute"][1]


def test_clouds_are_masked_with_the_imagery_the_predictions_were_made_from(tmp_path, region, untrained_model):
    """Predictions from `glacier-mapper segment` name their imagery; `area-change` without
    --start-quality/--end-quality masks clouds with its SCL band and says so: the same table
    as when the imagery is given as quality, from another working folder."""
    import subprocess
    from glacier_mapper_plugin.core.vector import read_layer
    predictions = {}
    for date, imagery in (("start", region.imagery_start), ("end", region.imagery_end)):
        predictions[date] = tmp_path / f"{date}.tif"
        seg = subprocess.run([str(EXE), "segment", "--input", imagery, "--dem", region.dem, "--model",
                              untrained_model, "--tile-size", "128", "--overlap", "16", "--device", "cpu",
                              "--output-probability", predictions[date]], capture_output=True, text=True, timeout=600)
        assert seg.returncode == 0, seg.stderr
    runs = {}
    for form, extra in (("found", []), ("told", ["--start-quality", region.imagery_start,
                                                 "--end-quality", region.imagery_end])):
        out = subprocess.run([str(EXE), "area-change", "--inventory", region.inventory, "--start", predictions["start"],
                              "--end", predictions["end"], *map(str, extra), "--output", tmp_path / f"{form}.gpkg",
                              "--output-report", tmp_path / f"{form}.html", "--json"],
                             capture_output=True, text=True, cwd="/", timeout=600)
        assert out.returncode == 0, out.stderr
        runs[form] = (out.stderr, json.loads(out.stdout), read_layer(tmp_path / f"{form}.gpkg").records)
    assert "START_QUALITY not given: masking clouds, shadow and no data with the SCL band" in runs["found"][0]
    assert "not given" not in runs["told"][0]
    assert runs["found"][1]["REGIONAL_RATE"] == runs["told"][1]["REGIONAL_RATE"]
    assert runs["found"][2] == runs["told"][2]
    assert any(r["masked_end"] > 0 or r["masked_start"] > 0 for r in runs["found"][2])  # the region has clouds
    # The report says what was measured: inventory, id column, each prediction's date, imagery
    # and model (with its training summary), how clouds were masked, the software.
    report = (tmp_path / "found.html").read_text()
    for expected in (str(region.inventory), "glaciers identified by its column", Path(region.imagery_end).name,
                     "untrained.gmm", "resnet18", "the SCL band of the imagery each prediction was made from",
                     "GDAL", "Glacier Mapper", str(region.end_date)[:4]):
        assert expected in report, expected
    assert "not tagged" not in report
