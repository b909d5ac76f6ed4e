import math

import numpy as np
import pytest

from glacier_mapper_plugin.core.segmentation.metrics import confusion, mean_std, scores


def test_hand_computed_scores():
    pred = np.array([1, 1, 0, 0, 1, 0], bool)
    truth = np.array([1, 0, 1, 0, 1, 0], bool)
    c = confusion(pred, truth)
    assert c == {"tp": 2, "fp": 1, "fn": 1, "tn": 2}
    s = scores(c)
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["iou"] == pytest.approx(2 / 4)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3)


def test_invalid_pixels_do_not_count():
    pred = np.array([1, 1, 0])
    truth = np.array([1, 0, 0])
    valid = np.array([True, False, True])
    assert confusion(pred, truth, valid) == {"tp": 1, "fp": 0, "fn": 0, "tn": 1}


def test_undefined_is_nan_and_mean_std_ignores_it():
    assert math.isnan(scores({"tp": 0, "fp": 0, "fn": 0, "tn": 5})["iou"])
    rows = [dict(accuracy=0.9, iou=0.8, precision=0.9, recall=0.9, f1=0.9),
            dict(accuracy=0.7, iou=float("nan"), precision=0.7, recall=0.7, f1=0.7)]
    mean, std = mean_std(rows)
    assert mean["accuracy"] == pytest.approx(0.8) and mean["iou"] == pytest.approx(0.8)
    assert std["accuracy"] == pytest.approx(np.std([0.9, 0.7], ddof=1))
