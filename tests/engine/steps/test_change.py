import numpy as np
import pytest

from glacier_mapper_plugin.engine.steps.change import year_of


def test_unknown_rgi_dates_are_not_years():
    assert np.isnan(year_of(-9999999)) and np.isnan(year_of("-9999999")) and np.isnan(year_of(99999999))
    assert year_of("2015-08-28") == pytest.approx(2015.65, abs=0.01) and year_of(2003) == 2003


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
