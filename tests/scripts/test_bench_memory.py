"""scripts/bench_memory.py in one short run: every stage gives the same result on the scene and
on the larger raster around it, and the table is printed."""
import re

from scripts import bench_memory


def test_the_memory_benchmark_runs_and_each_stage_agrees(capsys):
    assert bench_memory.main(["--size", "1400"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^\| (patches|area_change|polygons) \| (\d+) \| [\d.]+ \| (\d+) \| [\d.]+ \| ([\d.]+) \| (\w+) \((\d+)\) \|$",
                      out, re.MULTILINE)
    assert [r[0] for r in rows] == ["patches", "area_change", "polygons"]
    assert all(r[4] == "True" and int(r[5]) > 0 and int(r[1]) > 50 for r in rows)
