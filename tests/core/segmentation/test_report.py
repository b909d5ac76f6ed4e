"""The training curve table and report, read back from real (tiny) trained model files."""
import base64
import re

import pytest

from glacier_mapper_plugin.core.labels import Inventory
from glacier_mapper_plugin.core.segmentation.model_file import read_header
from glacier_mapper_plugin.core.segmentation.report import curve_rows, write_training_report
from glacier_mapper_plugin.core.segmentation.train import TrainOptions, train_model
from glacier_mapper_plugin.core.vector import read_layer

FAST = dict(patch_size=64, encoder="resnet18", epochs=3, batch_size=4, device="cpu", learning_rate=0.01)


@pytest.fixture(scope="module")
def models(small_region, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    inv = Inventory.from_layer(read_layer(small_region.inventory, "inventory"))
    out = []
    for seed in (1, 2):
        path = folder / f"m{seed}.gmm"
        train_model([small_region.imagery_start], inv, path, small_region.dem, TrainOptions(**FAST, seed=seed))
        out.append((path, read_header(path)))
    return out


def test_the_curve_has_one_row_per_member_and_epoch(models):
    rows = curve_rows(models)
    for path, header in models:
        mine = [r for r in rows if r["model"] == path.name]
        history = header.training["history"]
        assert [r["epoch"] for r in mine] == [h["epoch"] for h in history]
        assert [r["val_iou"] for r in mine] == pytest.approx([h["val_iou"] for h in history])
        assert [r["epoch"] for r in mine if r["best"]] == [header.metrics["best_epoch"]]
        assert {r["seed"] for r in mine} == {header.training["seed"]}
        # cosine: the last epoch of the full run ends at 1 % of the base rate
        assert mine[-1]["learning_rate"] == pytest.approx(0.01 * FAST["learning_rate"])
        assert mine[0]["learning_rate"] < FAST["learning_rate"]


def test_the_report_shows_curve_reliability_and_baseline(models, tmp_path):
    path = write_training_report(tmp_path / "r.html", models)
    text = path.read_text(encoding="utf-8")
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == 2  # the curve and the reliability diagram
    for img in images:
        assert base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n"
    for _, header in models:
        cal = header.metrics["calibration"]
        assert len(cal["reliability_before"]) == len(cal["reliability"]) == 15
        assert f"{cal['temperature']:.4g}" in text
        assert header.metrics["baseline"]["index"] in text
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # written atomically, nothing beside it


def test_a_warning_of_the_model_heads_the_report(models, tmp_path):
    path, header = models[0]
    header.metrics = dict(header.metrics, warnings=["validation IoU below the NDSI threshold"])
    text = write_training_report(tmp_path / "r.html", [(path, header)]).read_text(encoding="utf-8")
    assert text.index("validation IoU below the NDSI threshold") < text.index("Training curve")
