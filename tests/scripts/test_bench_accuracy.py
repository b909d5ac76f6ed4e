"""scripts/bench_accuracy.py on the real everest_west benchmark (shared/data): the fixed split,
both baselines and the U-Net through train_model's and segment_glaciers' code, in one short
run. The baselines are deterministic on the fixed split: their scores are pinned, so a change
in the split, the truth rasterisation or the scoring shows here."""
import re

from scripts import bench_accuracy


def test_the_benchmark_runs_and_its_baselines_hold(shared_data, capsys, tmp_path):
    assert bench_accuracy.main(["--seeds", "1", "2", "--epochs", "1", "--tta", "none", "flips",
                                "--precision", "auto", "int8", "--error-map", str(tmp_path / "errors.png")]) == 0
    out = capsys.readouterr().out
    assert "train rows 0-299 (53% glacier), gap 300-339, test rows 340-654 (30% glacier)" in out
    threshold = re.search(r"\| brightness >= (\d+) \(chosen on train\) \| - \| ([\d.]+) \|", out)
    assert threshold and threshold.groups() == ("66", "0.362")
    forest = re.search(r"\| random forest \(xgboost\) \| 1 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", out)
    assert forest and abs(float(forest.group(1)) - 0.438) <= 0.01  # xgboost: threads may move the last digit
    unet = re.search(r"\| U-Net \(best epoch 1\) \| 1 \| ([\d.]+) \|", out)
    assert unet and 0.0 <= float(unet.group(1)) <= 1.0
    flips = re.search(r"\| U-Net \(best epoch 1\), TTA flips \| 1 \| ([\d.]+) \|", out)
    assert flips and 0.0 <= float(flips.group(1)) <= 1.0
    int8 = re.search(r"\| U-Net \(best epoch 1\), TTA none, int8 \| 1 \| ([\d.]+) \|", out)
    assert (int8 and abs(float(int8.group(1)) - float(unet.group(1))) <= 0.005) \
        or "seed 1, none, int8: refused: PRECISION int8: quantised" in out  # the model's own check decides
    assert "seed 1: temperature" in out and "'index': 'brightness'" in out  # calibration and baseline reported
    # the two seeds as one ensemble through segment_glaciers' ENSEMBLE, scored as one map
    ensemble = re.search(r"\| Ensemble of the 2 seeds' U-Nets \(ENSEMBLE: their mean\) \| all \| ([\d.]+) \|", out)
    assert ensemble and 0.0 <= float(ensemble.group(1)) <= 1.0
    assert "lies within the members' range" in out
    from PIL import Image
    with Image.open(tmp_path / "errors.png") as image:  # the first seed's error map
        assert image.size[0] > 2 * image.size[1] and len(set(image.convert("RGB").getdata())) > 50
