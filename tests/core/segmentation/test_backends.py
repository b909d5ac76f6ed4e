"""The forward pass on torch, onnxruntime and OpenVINO (BACKEND): the same map whatever the
runtime (issue 27: >= 99.9 % of pixels agree, mean |dp| <= 0.002), on the synthetic region and
on the real everest_west scene (Landsat 7 over Khumbu, RGI 6.0), each with a trained model;
the exported graph cached by content and runtime version; auto measured once per model and
machine, and saying what it picked."""
import json
import shutil

import numpy as np
import pytest
import rasterio

from glacier_mapper_plugin.core.progress import Progress
from glacier_mapper_plugin.core.segmentation import backends
from glacier_mapper_plugin.core.segmentation.segment import SegmentOptions, segment

RUNTIMES = ["onnxruntime", "openvino"]  # engine dependencies (requirements.txt): never skipped


class Log(Progress):
    def __init__(self):
        super().__init__()
        self.lines = []

    def info(self, message):
        self.lines.append(message)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GLACIER_MAPPER_CACHE", str(tmp_path / "cache"))


def _map(image, model, dem, out, **kw):
    segment(image, model, out, None, None, dem,
            SegmentOptions(**dict(dict(tile_size=256, overlap=64, device="cpu", precision="fp32"), **kw)))
    with rasterio.open(out) as src:
        return src.read(1)


def _assert_same_map(a, b):
    ok = np.isfinite(a) & np.isfinite(b)
    assert np.array_equal(np.isfinite(a), np.isfinite(b))
    assert ((a >= 0.5) == (b >= 0.5))[ok].mean() >= 0.999
    assert np.abs(a - b)[ok].mean() <= 0.002


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("tta", ["none", "flips"])
def test_the_same_map_whatever_the_runtime_on_the_synthetic_region(small_region, trained, tmp_path, runtime, tta):
    ref = _map(small_region.imagery_end, trained, small_region.dem, tmp_path / "t.tif", tta=tta)
    got = _map(small_region.imagery_end, trained, small_region.dem, tmp_path / "o.tif", tta=tta, backend=runtime)
    assert 0.02 < (ref >= 0.5)[np.isfinite(ref)].mean() < 0.98  # a map with both classes
    _assert_same_map(ref, got)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_same_map_whatever_the_runtime_on_everest_west(khumbu, tmp_path, runtime):
    ref = _map(khumbu.test, khumbu.model, None, tmp_path / "t.tif")
    got = _map(khumbu.test, khumbu.model, None, tmp_path / "o.tif", backend=runtime)
    assert 0.05 < (ref >= 0.5)[np.isfinite(ref)].mean() < 0.95
    _assert_same_map(ref, got)


def test_the_graph_is_keyed_by_content_and_exporter_version(trained, tmp_path, monkeypatch):
    copy = shutil.copy(trained, tmp_path / "elsewhere.gmm")
    assert backends.graph_path(trained) == backends.graph_path(copy)  # a path is no key
    with open(copy, "ab") as f:
        f.write(b"\0")  # another content under the same name
    assert backends.graph_path(copy) != backends.graph_path(trained)
    before = backends.graph_path(trained)
    monkeypatch.setattr(backends, "versions", lambda: {"torch": "9.9"})
    assert backends.graph_path(trained) != before  # a new exporter exports afresh


def test_auto_measures_once_per_model_and_machine_and_says_why(small_region, trained, tmp_path, monkeypatch):
    log = Log()
    segment(small_region.imagery_end, trained, tmp_path / "a.tif", None, None, small_region.dem,
            SegmentOptions(tile_size=256, overlap=64, device="cpu", precision="fp32", backend="auto"), log)
    said = [line for line in log.lines if line.startswith("BACKEND auto picked")]
    assert len(said) == 1 and all(f"{b} " in said[0] for b in ["torch"] + RUNTIMES)
    records = list((tmp_path / "cache" / "backends").glob("*.json"))
    assert len(records) == 1
    picked = json.loads(records[0].read_text())
    assert picked["backend"] == max(picked["tiles_per_s"], key=picked["tiles_per_s"].get)

    def no_second_measurement(*a):
        raise AssertionError("measured again")
    monkeypatch.setattr(backends, "_timed", no_second_measurement)
    again = Log()
    segment(small_region.imagery_end, trained, tmp_path / "b.tif", None, None, small_region.dem,
            SegmentOptions(tile_size=256, overlap=64, device="cpu", precision="fp32", backend="auto"), again)
    assert f"({picked['backend']}," in " ".join(again.lines)


def test_an_unreadable_record_is_measured_again(trained, tmp_path):
    first = backends.choose(*_choose_args(trained))
    (record,) = (tmp_path / "cache" / "backends").glob("*.json")
    record.write_text("{not json")  # a half-written or edited record is not trusted
    again = backends.choose(*_choose_args(trained))
    assert again[0] in ["torch"] + RUNTIMES and set(again[1]) == set(first[1])
    assert json.loads(record.read_text())["backend"] == again[0]


def _choose_args(model):
    from glacier_mapper_plugin.core.segmentation.segment import prepared_model
    network, header = prepared_model(model, "cpu")
    return network, model, header, "fp32", 1, 1, (2, 6, 128, 128)


def test_the_machine_is_part_of_the_key():
    a = backends.machine_key(1, 2, "fp32", (4, 6, 512, 512))
    assert a == backends.machine_key(1, 2, "fp32", (4, 6, 512, 512))
    assert a != backends.machine_key(2, 1, "fp32", (4, 6, 512, 512))
    assert a != backends.machine_key(1, 2, "bf16", (4, 6, 512, 512))
    assert a != backends.machine_key(1, 2, "fp32", (4, 6, 256, 256))


def test_a_backend_that_cannot_run_is_refused_naming_what_to_do(monkeypatch):
    with pytest.raises(ValueError, match="BACKEND must be one of"):
        backends.check_backend("tensorrt", "cpu", "fp32")
    with pytest.raises(ValueError, match="BACKEND onnxruntime runs on the CPU; DEVICE is cuda"):
        backends.check_backend("onnxruntime", "cuda", "bf16")
    monkeypatch.setattr(backends, "versions", lambda: {"torch": "2", "onnxruntime": "1"})
    with pytest.raises(ValueError, match="runs fp32 or int8.*use PRECISION fp32"):
        backends.check_backend("onnxruntime", "cpu", "bf16")
    monkeypatch.setattr(backends, "versions", lambda: {"torch": "2"})
    with pytest.raises(ValueError, match="not installed in the engine.*pip install openvino"):
        backends.check_backend("openvino", "cpu", "fp32")
    assert backends.check_backend("auto", "cuda", "bf16") == "auto"


def test_onnxruntime_under_precision_auto_runs_fp32(small_region, trained, tmp_path, monkeypatch):
    from glacier_mapper_plugin.core.segmentation import segment as segment_module
    monkeypatch.setattr(segment_module, "cpu_supports_bf16", lambda: True)  # as on an AMX CPU
    assert segment_module.pick_precision("auto", "cpu") == "bf16"
    res = segment(small_region.imagery_end, trained, tmp_path / "p.tif", None, None, small_region.dem,
                  SegmentOptions(tile_size=256, overlap=64, device="cpu", backend="onnxruntime"))
    assert res.precision == "fp32"


def test_auto_measures_once_for_chips_of_one_size_class(small_region, trained, tmp_path):
    """A batch over glacier chips of different sizes (here 190, 170 and 150 px windows of one
    scene) measures once per power-of-two size class, not once per chip."""
    from rasterio.windows import Window
    chips = []
    with rasterio.open(small_region.imagery_end) as src:
        for side in (190, 170, 150):
            out = tmp_path / f"chip{side}.tif"
            window = Window(0, 0, side, side)
            with rasterio.open(out, "w", **dict(src.profile, width=side, height=side,
                                                transform=src.window_transform(window))) as dst:
                dst.write(src.read(window=window))
                dst.update_tags(**src.tags())
                dst.descriptions = src.descriptions
            chips.append(out)
    for chip in chips:
        segment(chip, trained, tmp_path / f"p_{chip.stem}.tif", None, None, small_region.dem,
                SegmentOptions(tile_size=512, overlap=64, device="cpu", precision="fp32", backend="auto"))
    assert len(list((tmp_path / "cache" / "backends").glob("*.json"))) == 1


def _fresh_process(script: str, model, tmp_path, timeout: float):
    """`script` run with the model's path in a new Python (what only a process's first
    OpenVINO use or its signal handling can show), with this test's cache."""
    import os
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-c", script, str(model)], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, GLACIER_MAPPER_CACHE=str(tmp_path / "cache")))


SIGNALS_AFTER_OPENVINO = """
import gc, signal, subprocess, sys
from glacier_mapper_plugin.core.segmentation import backends
from glacier_mapper_plugin.core.segmentation.segment import prepared_model
model, header = prepared_model(sys.argv[1], "cpu")
first = backends.make_forward("openvino", model, sys.argv[1], header, "cpu", "fp32", 1, 1)
second = backends.make_forward("openvino", model, sys.argv[1], header, "cpu", "fp32", 1, 1)
del first; gc.collect()   # freed in the order they were made, as the garbage collector may
del second; gc.collect()
signal.signal(signal.SIGCHLD, lambda *a: None)  # a Python handler, as torch's DataLoader installs
subprocess.run([sys.executable, "-c", "pass"], check=True)  # its SIGCHLD runs the handler
print("signals work")
"""


def test_openvino_models_freed_in_any_order_leave_signals_working(trained, tmp_path):
    """Regression: two OpenVINO models freed first-made-first-freed left the thread's signal
    stack on unmapped memory (OpenVINO's CPU plugin restores it only in reverse order), and
    the next handled signal killed the process with SIGSEGV (the engine-tier test process
    died so after test_backends, when training's DataLoader had installed a SIGCHLD handler
    and a subprocess ended). One Core per process (backends.openvino_core) keeps it valid; the
    compiled model still goes to the user's cache."""
    run = _fresh_process(SIGNALS_AFTER_OPENVINO, trained, tmp_path, timeout=300)
    assert run.returncode == 0 and "signals work" in run.stdout, (run.returncode, run.stderr[-2000:])
    assert list((tmp_path / "cache" / "openvino").glob("*.blob")), "the compiled model is cached (CACHE_DIR)"


FIRST_CALLS_TOGETHER = """
import sys, threading
import torch
from glacier_mapper_plugin.core.segmentation import backends
from glacier_mapper_plugin.core.segmentation.segment import prepared_model
model, header = prepared_model(sys.argv[1], "cpu")
forward = backends.make_forward("openvino", model, sys.argv[1], header, "cpu", "fp32", 1, 2)
x, start = torch.zeros(1, len(header.bands) + len(header.features), 64, 64), threading.Barrier(2)
def stream():
    start.wait()  # both stream threads call at once, as segment's first two batches do
    forward(x)
threads = [threading.Thread(target=stream) for _ in range(2)]
[t.start() for t in threads]
[t.join() for t in threads]
print("both streams ran")
"""


def test_openvino_streams_calling_first_together_do_not_deadlock(trained, tmp_path):
    """Regression: two stream threads making a process's first OpenVINO calls together hung
    it for good (pybind11's numpy bridge is set up inside a C++ static: one thread held the
    GIL waiting for the static, the other held the static waiting for the GIL) -- an engine
    hung in CI; reproduced in 1 of 5 fresh processes. OpenVinoForward makes the first call
    itself, one thread at a time. Fresh processes, since only a process's first call can hang."""
    import subprocess
    for attempt in range(5):
        try:
            run = _fresh_process(FIRST_CALLS_TOGETHER, trained, tmp_path, timeout=180)
        except subprocess.TimeoutExpired:
            pytest.fail(f"deadlock: the streams' first OpenVINO calls hung (fresh process {attempt + 1} of 5)")
        assert run.returncode == 0 and "both streams ran" in run.stdout, run.stderr[-2000:]
