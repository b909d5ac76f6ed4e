"""Tier 5: the QGIS desktop itself, under Xvfb with Mesa's GL driver (not offscreen: the
offscreen platform loads no GL driver and hides the crash this tier exists for: torch's
bundled LLVM colliding with the LLVM of Mesa's driver). scripts/desktop_walk.py runs the whole
chain in `qgis --code` as the toolbox dialog does (synthetic_region, train_model,
cross_validate, segment_glaciers, evaluate_segmentation, area_change), with a screenshot per
step; this test asserts on what the user sees after each: groups, layer order, opacity, styles."""
import os
import shutil
from pathlib import Path

import pytest

from scripts.desktop_walk import Xvfb, walk


@pytest.fixture()
def xvfb():
    with Xvfb() as display:
        yield display


def _group(tree, prefix):
    groups = [n for n in tree if "group" in n and n["group"].startswith(prefix)]
    assert len(groups) == 1, (prefix, [n.get("group", n.get("layer")) for n in tree])
    return groups[0]


def _names(group):
    return [n["layer"] for n in group["children"]]


def test_desktop_walk(xvfb, tmp_path):
    report, proc = walk(tmp_path, xvfb)
    assert "error" not in report, report["error"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report["provider"] and report["engine_packages_in_qgis"] == []
    assert report["gl_driver_loaded"], "no GL driver in the QGIS process: the test would prove nothing"
    steps = report["steps"]
    assert list(steps) == ["synthetic_region", "train_model", "cross_validate", "segment_glaciers",
                           "evaluate_segmentation", "area_change"]
    for step in steps.values():
        shot = tmp_path / step["screenshot"]
        assert shot.exists() and shot.stat().st_size > 20_000, shot
    # 1. The region in its own group: outlines over the translucent hillshade over the scenes.
    region = _group(steps["synthetic_region"]["tree"], "Synthetic region: seed 5")
    names = _names(region)
    assert names[:2] == ["Inventory", "DEM (hillshade)"] and all(n.startswith("Sentinel-2 L2A") for n in names[2:])
    assert len(names) == 4 and region["children"][1]["renderer"] == "hillshade"
    # 3. Cross-validation: the inventory by fold over the out-of-fold probability, translucent.
    folds = _group(steps["cross_validate"]["tree"], "Cross-validation: ")
    names = _names(folds)
    assert names[0].startswith("Inventory by fold") and names[1].startswith("Fold metrics")
    assert names[2].startswith("Out-of-fold probability") and folds["children"][2]["opacity"] == pytest.approx(0.6)
    assert folds["children"][0]["renderer"] == "RuleRenderer"
    # 4. Each segmentation run in a group above the rest: polygons over mask over probability
    # (translucent), so the scene shows through (issue 25: 'the map is a dark square').
    tree = steps["segment_glaciers"]["tree"]
    assert tree[0]["group"].startswith("Glaciers mapped: ") and tree[1]["group"].startswith("Glaciers mapped: ")
    mapped = tree[0]
    names = _names(mapped)
    assert [n.split(" - ")[0] for n in names] == ["Glacier polygons", "Glacier mask", "Glacier probability"]
    assert all(n.endswith(" - " + Path(steps["segment_glaciers"]["outputs"]["OUTPUT_PROBABILITY"]).stem)
               or "S2_L2A_" in n for n in names)
    assert [c["opacity"] for c in mapped["children"]] == pytest.approx([1.0, 1.0, 0.6])
    assert mapped["children"][1]["renderer"] == "paletted" and mapped["children"][2]["renderer"] == "singlebandpseudocolor"
    assert any(n.get("group", "").startswith("Synthetic region") for n in tree[2:])  # the imagery below
    # 5. Evaluation: glaciers coloured by recall, the paper's 0.75 a class edge.
    evaluation = _group(steps["evaluate_segmentation"]["tree"], "Evaluation: ")
    assert _names(evaluation)[0].startswith("Glaciers by recall") and evaluation["children"][0]["renderer"] == "RuleRenderer"
    # 6. Area change: the styled inventory over its two tables, named after the inventory.
    change = _group(steps["area_change"]["tree"], "Area change: Inventory")
    assert [n.split(" - ")[0] for n in _names(change)] == ["Area change", "Regional summary", "Size classes"]
    assert change["children"][0]["renderer"] == "RuleRenderer"
    report_html = (tmp_path / "area_change.html").read_text(encoding="utf-8")
    assert "Inventory (" in report_html  # the user's layer, by name
    # Styles: the scene shows reflectance (not black), the probability legend reads 0 to 1.
    assert report["scene_mean_value"] > 60, report["scene_mean_value"]
    assert "nan" not in " ".join(report["probability_legend"]).lower(), report["probability_legend"]
    keep = os.environ.get("GLACIER_MAPPER_SCREENSHOTS")
    if keep:
        for step in steps.values():
            shutil.copy(tmp_path / step["screenshot"], Path(keep) / step["screenshot"])
        shutil.copy(tmp_path / "scene.png", Path(keep) / "desktop_scene.png")
