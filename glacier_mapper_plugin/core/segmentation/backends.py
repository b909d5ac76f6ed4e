"""The runtime that runs the network's forward pass on the CPU (BACKEND): torch, onnxruntime
or OpenVINO, whichever is fastest on the user's CPU at the same precision (issue 27).

The graph the other runtimes run is exported once from the fused torch model (ONNX, dynamic
batch and tile size) and cached in the user's cache under the model file's content hash and
the exporter's (torch's) version and opset; OpenVINO keeps its compiled form in its own cache
beside it, keyed by its version. A model replaced at its path, or a new torch, exports
afresh, and a model folder that is read-only or shared by a cluster needs no write access. `auto` times
each installed runtime on one batch of the run's own shape the first time a model meets a
machine and keeps the answer (cached per model content, CPU, thread count and versions); it
says what it picked and why. Everything around the forward pass (tiles, TTA views,
temperature, blending) is the same code whatever the backend, so the maps agree
(tests/core/segmentation/test_backends.py). PRECISION int8 runs a quantised graph
(core.segmentation.quantisation) on onnxruntime or OpenVINO, never torch."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np

from ..io import atomic_output, cache_dir

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
OPSET = 17
TIMED_RUNS = 3  # after one warm-up: the fastest of three forwards of one batch


def versions() -> dict[str, str]:
    """The installed CPU runtimes and their versions (torch always)."""
    import torch
    out = {"torch": torch.__version__}
    try:
        import onnxruntime
        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    try:
        import openvino
        out["openvino"] = openvino.__version__.split("-")[0]
    except ImportError:
        pass
    return out


def check_backend(backend: str, device: str, precision: str) -> str:
    """The BACKEND asked for, refused with what to do when it cannot run here."""
    backend = (backend or "auto").lower()
    if backend not in BACKENDS:
        raise ValueError(f"BACKEND must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if precision == "int8" and backend == "torch":
        raise ValueError("PRECISION int8 runs on onnxruntime or OpenVINO, not torch: use BACKEND auto, "
                         "onnxruntime or openvino, or PRECISION fp32")
    if backend in ("auto", "torch"):
        return backend
    if device != "cpu":
        raise ValueError(f"BACKEND {backend} runs on the CPU; DEVICE is {device}: use BACKEND torch (or auto) "
                         "on a GPU, or DEVICE cpu")
    if backend not in versions():
        raise ValueError(f"BACKEND {backend} is not installed in the engine: use BACKEND auto or torch, or "
                         f"install it into the engine's environment (pip install {backend})")
    if backend == "onnxruntime" and precision not in ("fp32", "int8"):
        raise ValueError(f"BACKEND onnxruntime runs fp32 or int8 on the CPU; PRECISION is {precision}: use "
                         "PRECISION fp32 (or auto) or int8, or another BACKEND")
    return backend


def content_key(model_path) -> str:
    """The model file's SHA-256 (first 16 hex): a cache entry follows the content, not the path.
    Read once per file version (path, size, modification time) in a process, however many
    runtimes and records ask. A list of files (an ensemble, one stacked graph): the key of
    their keys, in member order (the graph's output channels follow it)."""
    from ..identity import file_key
    if isinstance(model_path, (list, tuple)):
        keys = [content_key(m) for m in model_path]
        return keys[0] if len(keys) == 1 else hashlib.sha256("+".join(keys).encode()).hexdigest()[:16]
    return _sha256(*file_key(model_path))


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def graph_path(model_path) -> Path:
    """One ONNX file per model content and exporter, read by every runtime."""
    return cache_dir() / "graphs" / f"{content_key(model_path)}-torch{versions()['torch']}-opset{OPSET}.onnx"


def int8_graph(model, model_path, header, progress=None) -> Path:
    """The quantised graph (core.segmentation.quantisation), made once per model content,
    exporter and quantiser version, and refused for a model it costs too much IoU."""
    import onnxruntime

    from . import quantisation
    fp32 = export_graph(model, len(header.bands) + len(header.features), graph_path(model_path))
    path = fp32.with_name(f"{fp32.stem}-int8-onnxruntime{onnxruntime.__version__}.onnx")
    record = None
    if path.exists():
        try:
            record = json.loads(path.with_suffix(".json").read_text())
            if not isinstance(record, dict) or not quantisation.RECORD_KEYS <= set(record):
                record = None
        except (OSError, ValueError):
            pass  # no, unreadable or older record: quantised and checked again
    if record is None:
        if progress is not None:
            progress.info("PRECISION int8: quantising the model's graph (once per model and runtime version)")
        record = quantisation.quantise(fp32, path, model_path, header)
    quantisation.offered(record, Path(model_path).name)
    if progress is not None:
        progress.info(quantisation.describe(record))
    return path


def export_graph(model, channels: int, path: Path) -> Path:
    """The fused eval-mode network as ONNX (input x: N, C, H, W; output logits), written
    atomically so a cancelled export leaves no half graph in the cache."""
    import copy

    import torch
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # a copy: the prepared model is shared, and .to() would change its layout in place
    model = copy.deepcopy(model).float().to(memory_format=torch.contiguous_format).eval()
    dummy = torch.zeros(1, channels, 64, 64)
    with atomic_output(path) as tmp, torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(model, (dummy,), str(tmp), input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}},
                          opset_version=OPSET, dynamo=False)
    return path


class TorchForward:
    name = "torch"

    def __init__(self, model, device: str, precision: str, threads: int):
        import torch
        self.torch, self.model, self.device = torch, model, device
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def __call__(self, x):
        torch = self.torch
        if self.device == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device, dtype=self.dtype, enabled=self.dtype is not None):
            return self.model(x).float()


class OnnxRuntimeForward:
    """One session; stream threads call run() on it concurrently (onnxruntime allows it),
    each op with the stream's share of the cores."""
    name = "onnxruntime"

    def __init__(self, graph: Path, threads: int):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(graph), so, providers=["CPUExecutionProvider"])

    def __call__(self, x):
        import torch
        out = self.session.run(None, {"x": np.ascontiguousarray(x.numpy(), dtype=np.float32)})[0]
        return torch.from_numpy(out)


_OPENVINO: list = []
_OPENVINO_LOCK = threading.Lock()


def openvino_core():
    """The process's one OpenVINO Core, kept until the process ends. Why: OpenVINO's CPU
    plugin (one per Core) swaps its thread's signal stack for one of its own and gives the
    old one back only if plugins are freed in reverse order of creation. Two Cores freed
    first-in-first-out left the thread's signal stack on unmapped memory, and the next signal
    with a Python handler (SIGCHLD, which torch's DataLoader handles, when a subprocess ended)
    killed the process with SIGSEGV: a test process died so after segmenting with OpenVINO
    and then training, and a long-lived engine would have too."""
    with _OPENVINO_LOCK:
        if not _OPENVINO:
            import openvino as ov
            _OPENVINO.append(ov.Core())
        return _OPENVINO[0]


class OpenVinoForward:
    """One compiled model with as many OpenVINO streams as ours, one infer request per
    stream thread (a request is not shared between threads)."""
    name = "openvino"

    def __init__(self, graph: Path, threads: int, streams: int, precision: str):
        # CACHE_DIR: the compiled blob, keyed by OpenVINO (its version included): the next
        # run starts faster
        self.compiled = openvino_core().compile_model(str(graph), "CPU", {
            "CACHE_DIR": str(cache_dir() / "openvino"),
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "NUM_STREAMS": str(streams), "INFERENCE_NUM_THREADS": str(threads * streams)})
        self.local = threading.local()
        # Why a first call here, one thread at a time: OpenVINO's Python binding sets up its
        # numpy bridge (pybind11) on first use inside a C++ static, and two stream threads
        # making the process's first call together deadlocked (one held the GIL waiting for
        # the static, the other held the static waiting for the GIL: an engine hung in CI).
        with _OPENVINO_LOCK:
            import torch
            self(torch.zeros(1, self.compiled.input(0).get_partial_shape()[1].get_length(), 32, 32))

    def __call__(self, x):
        import torch
        request = getattr(self.local, "request", None)
        if request is None:
            request = self.local.request = self.compiled.create_infer_request()
        out = request.infer({0: np.ascontiguousarray(x.numpy(), dtype=np.float32)})
        return torch.from_numpy(np.array(out[0], copy=True))


def make_forward(backend: str, model, model_path, header, device: str, precision: str,
                 threads: int, streams: int, progress=None):
    if backend == "torch":
        return TorchForward(model, device, precision, threads)
    if precision == "int8":
        graph = int8_graph(model, model_path, header, progress)
    else:
        graph = export_graph(model, len(header.bands) + len(header.features), graph_path(model_path))
    if backend == "onnxruntime":
        return OnnxRuntimeForward(graph, threads)
    return OpenVinoForward(graph, threads, streams, precision)


def machine_key(threads: int, streams: int, precision: str, shape) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:  # Linux names the CPU model here, not in platform
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    text = json.dumps([cpu, os.cpu_count(), threads, streams, precision, list(shape), versions()], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def choose(model, model_path, header, precision: str, threads: int, streams: int, shape,
           progress=None) -> tuple[str, dict, object]:
    """BACKEND auto on the CPU: (backend, {runtime: tiles per second}, its forward when just
    built by the measurement, else None), measured once per model content and machine, then
    read from the cache."""
    record = cache_dir() / "backends" / f"{content_key(model_path)}-{machine_key(threads, streams, precision, shape)}.json"
    if record.exists():
        try:
            saved = json.loads(record.read_text())
            return saved["backend"], saved["tiles_per_s"], None
        except (ValueError, KeyError):
            pass  # unreadable: measure again
    candidates = [b for b in versions() if not (b == "onnxruntime" and precision not in ("fp32", "int8"))
                  and not (b == "torch" and precision == "int8")]
    if len(candidates) == 1:
        return candidates[0], {}, None  # nothing to compare with
    import torch
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape, dtype=np.float32))
    speed, built = {}, {}
    own = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for name in candidates:
            try:
                forward = built[name] = make_forward(name, model, model_path, header, "cpu", precision,
                                                     threads, streams, progress)
                with torch.inference_mode():
                    forward(x)
                    best = min(_timed(forward, x) for _ in range(TIMED_RUNS))
                speed[name] = round(shape[0] / best, 3)
            except Exception as err:  # a runtime that cannot run this graph is left out, and said so
                if precision == "int8" and isinstance(err, ValueError):
                    raise  # the model refuses int8 (or has no calibration): no runtime will do
                if progress is not None:
                    progress.warning(f"BACKEND auto: {name} could not run the model ({err}); left out")
    finally:
        torch.set_num_threads(own)
    if not speed and precision == "int8":
        raise ValueError("PRECISION int8: no installed runtime could run the model's int8 graph (see the "
                         "warnings above): use PRECISION fp32")
    chosen = max(speed, key=speed.get) if speed else "torch"
    record.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(record) as tmp:
        Path(tmp).write_text(json.dumps({"backend": chosen, "tiles_per_s": speed, "shape": list(shape)}))
    return chosen, speed, built.get(chosen)


def _timed(forward, x) -> float:
    t = time.perf_counter()
    forward(x)
    return time.perf_counter() - t
