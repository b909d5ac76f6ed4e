import numpy as np
from hypothesis import given, settings, strategies as st

from glacier_mapper_plugin.core.segmentation.calibration import (calibrate, expected_calibration_error,
                                                                 fit_temperature, reliability, sample_pixels)


def _labels_at(temperature, n=40_000, seed=0):
    """Logits and labels drawn so that sigmoid(logit / temperature) is the true probability:
    an over-confident model (temperature > 1) as BCE training leaves it."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-logits / temperature))).astype(float)
    return logits, labels


@settings(max_examples=12, deadline=None)
@given(st.floats(0.4, 6.0), st.integers(0, 1000))
def test_temperature_found_where_it_was_planted(temperature, seed):
    logits, labels = _labels_at(temperature, seed=seed)
    assert abs(np.log(fit_temperature(logits, labels) / temperature)) < 0.08


def test_calibration_lowers_the_error_and_keeps_the_boundary():
    logits, labels = _labels_at(2.5)
    c = calibrate(logits, labels)
    assert c["ece"] < 0.02 < c["ece_before"] and abs(c["lean"]) < 0.01
    assert sum(r["pixels"] for r in c["reliability"]) == labels.size
    calibrated = 1 / (1 + np.exp(-logits / c["temperature"]))
    assert np.array_equal(calibrated >= 0.5, logits >= 0)  # the mask at 0.5 stays


def test_a_lean_to_glacier_is_measured():
    logits, labels = _labels_at(1.0)
    c = calibrate(logits + 1.0, labels)  # a network that calls everything a bit more glacier
    assert c["lean"] > 0.05


def test_one_class_or_nothing_is_left_alone():
    assert fit_temperature(np.array([1.0, 2.0]), np.array([1.0, 1.0])) == 1.0
    assert fit_temperature(np.array([]), np.array([])) == 1.0
    assert np.isnan(expected_calibration_error(np.array([]), np.array([])))


def test_reliability_of_a_perfectly_calibrated_forecast():
    rng = np.random.default_rng(1)
    p = rng.random(200_000)
    y = (rng.random(p.size) < p).astype(float)
    table = reliability(p, y)
    for row in table:
        assert abs(row["mean_probability"] - row["glacier_share"]) < 0.02
    assert expected_calibration_error(p, y) < 0.01


def test_pixel_sample_is_bounded_and_only_valid():
    rng = np.random.default_rng(0)
    logits = np.arange(100 * 100, dtype=np.float32).reshape(100, 100)
    valid = np.zeros((100, 100), bool)
    valid[:, :70] = True
    got, labels = sample_pixels(logits, np.ones((100, 100)), valid, rng)
    assert len(got) == 4096 and np.all(got % 100 < 70)
    got, _ = sample_pixels(logits[:10, 65:75], np.ones((10, 10)), valid[:10, 65:75], rng)
    assert len(got) == 50
