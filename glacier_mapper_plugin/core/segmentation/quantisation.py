"""PRECISION int8 on the CPU (issue 27): the network's ONNX graph quantised after training,
statically (weights per channel, activations per tensor), by onnxruntime's quantiser.

Static quantisation fixes each activation's range from sample inputs. Those samples are
windows of the training rasters, cut and stored in the model file when it is trained, so
the int8 graph is the same whichever raster a user segments first (calibrating on the input
would make one tile's map depend on the rest of the run). Beside them the model file keeps
windows on its validation glaciers with their labels: the int8 graph is offered only if its
IoU there is at most IOU_LOSS_LIMIT below the fp32 graph's, and the measurement is said and
kept with the graph. The int8 graph is QDQ ONNX, which onnxruntime and OpenVINO run in int8."""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from ..io import atomic_output
from .model_file import EXTRA_PREFIX

WINDOWS = 16          # calibration windows and check windows, each
# px: windows of 64 px (the patch size of scripts/bench_accuracy.py) calibrated a synthetic
# model to 87 % of its fp32 pixels on a whole scene, 128 px to 99.8 %: deep layers see only a
# few pixels of a small window, padding most of them, and their ranges come out wrong
WINDOW = 128
IOU_LOSS_LIMIT = 0.005
RECORD_KEYS = {"iou_fp32", "iou_int8", "iou_loss", "agreement", "windows", "pixels"}
CALIBRATION, CHECK_X, CHECK_Y, CHECK_VALID = (EXTRA_PREFIX + n for n in ("calibration", "check_x", "check_y", "check_valid"))


def sample(rasters, inventory, bands, mean, std, train_glaciers, val_glaciers, seed: int, **reading) -> dict:
    """Windows of the training rasters for the model file, standardised as the network sees
    them (float16): calibration windows anywhere on the scene (so the ranges cover what a map
    meets, not only ice), and check windows centred on validation glaciers (training glaciers
    when a run has none) with their labels and valid pixels. `reading`: cut_windows' options."""
    import torch

    from .patches import cut_windows
    from .train import standardise
    x, _, v = cut_windows(rasters, inventory, bands, WINDOW, WINDOWS, seed, **reading)
    cx, cy, cv = cut_windows(rasters, inventory, bands, WINDOW, WINDOWS, seed + 1,
                             glaciers=list(val_glaciers) or list(train_glaciers), **reading)
    return {CALIBRATION: torch.from_numpy(standardise(x, v, mean, std).astype(np.float16)),
            CHECK_X: torch.from_numpy(standardise(cx, cv, mean, std).astype(np.float16)),
            CHECK_Y: torch.from_numpy(cy.astype(np.uint8)), CHECK_VALID: torch.from_numpy(cv.astype(np.uint8))}


def read_samples(model_path, tensors: bool = True) -> dict:
    """The stored samples as numpy arrays (only checked to be there without `tensors`);
    refused (ValueError) for a model trained before they were stored."""
    from safetensors import safe_open
    names = (CALIBRATION, CHECK_X, CHECK_Y, CHECK_VALID)
    with safe_open(str(model_path), framework="np") as f:
        if not set(names) <= set(f.keys()):
            raise ValueError(f"PRECISION int8: the model file {Path(model_path).name} carries no calibration "
                             "windows (it was trained before Glacier Mapper stored them): train it again, or "
                             "use PRECISION fp32")
        return {k: f.get_tensor(k) for k in names} if tensors else {}


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: one input dict per call, None at the end."""

    def __init__(self, x: np.ndarray, batch: int = 4):
        self.batches = iter([{"x": x[i:i + batch].astype(np.float32)} for i in range(0, len(x), batch)])

    def get_next(self):
        return next(self.batches, None)


def quantise(graph: Path, out: Path, model_path, header) -> dict:
    """Write the int8 graph of `graph` to `out` (atomically) and its record beside it (.json):
    the IoU of the fp32 and the int8 graph on the check windows. Returns the record."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    data = read_samples(model_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # the quantiser logs every node it cannot infer a shape for
    try:
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            pre = Path(tmp) / "pre.onnx"
            quant_pre_process(str(graph), str(pre))  # folds and infers shapes: better-placed QDQ pairs
            with atomic_output(out) as q:
                # u8 activations, s8 weights per output channel: onnxruntime's fast CPU kernels;
                # MinMax ranges: percentile and entropy calibration cost as much IoU (measured)
                quantize_static(str(pre), str(q), _Reader(data[CALIBRATION]), quant_format=QuantFormat.QDQ,
                                per_channel=True, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                                nodes_to_exclude=float_convolutions(pre))
                record = _check(graph, Path(q), data, header)
    finally:
        logging.getLogger().setLevel(quiet)
    with atomic_output(out.with_suffix(".json")) as tmp:
        Path(tmp).write_text(json.dumps(record))
    return record


def float_convolutions(graph: Path) -> list[str]:
    """The convolutions that stay float: the first (on the input bands) and the last (the
    logits). Quantised, the first cost a 3-epoch everest_west model 0.09 IoU on its
    validation windows (onnxruntime's u8 x s8 AVX2 kernel saturates its sums); kept float,
    0.0006, and with the last too, none (docs/benchmarks.md)."""
    import onnx
    g = onnx.load(str(graph)).graph
    inputs, outputs = {i.name for i in g.input}, {o.name for o in g.output}
    return [n.name for n in g.node if n.op_type == "Conv" and (set(n.input) & inputs or set(n.output) & outputs)]


def _check(fp32: Path, int8: Path, data: dict, header) -> dict:
    import onnxruntime as ort
    x, y, valid = data[CHECK_X].astype(np.float32), data[CHECK_Y] > 0, data[CHECK_VALID] > 0
    masks = {}
    for name, graph in (("fp32", fp32), ("int8", int8)):
        session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
        logits = np.concatenate([session.run(None, {"x": x[i:i + 4]})[0][:, 0] for i in range(0, len(x), 4)])
        # the map's rule: probability sigmoid(logit / T) at or above the threshold
        masks[name] = logits / header.temperature >= np.log(header.threshold / (1 - header.threshold))
    iou = {k: _iou(m[valid], y[valid]) for k, m in masks.items()}
    return {"iou_fp32": round(iou["fp32"], 5), "iou_int8": round(iou["int8"], 5),
            "iou_loss": round(iou["fp32"] - iou["int8"], 5),
            "agreement": round(float((masks["fp32"] == masks["int8"])[valid].mean()), 5),
            "windows": int(len(x)), "pixels": int(valid.sum())}


def _iou(pred: np.ndarray, truth: np.ndarray) -> float:
    union = int((pred | truth).sum())
    return int((pred & truth).sum()) / union if union else 1.0


def offered(record: dict, model_name: str) -> None:
    """Refuse int8 for a model that loses more than IOU_LOSS_LIMIT of IoU by it."""
    if record["iou_loss"] > IOU_LOSS_LIMIT:
        raise ValueError(
            f"PRECISION int8: quantised, {model_name} loses {record['iou_loss']:.3f} IoU on its validation glaciers "
            f"({record['iou_fp32']:.3f} -> {record['iou_int8']:.3f}; the limit is {IOU_LOSS_LIMIT}): use "
            "PRECISION fp32 for this model")


def describe(record: dict) -> str:
    return (f"int8 graph checked on {record['windows']} windows of the model's validation glaciers: IoU "
            f"{record['iou_fp32']:.3f} (fp32) -> {record['iou_int8']:.3f} (int8), "
            f"{record['agreement']:.2%} of pixels agree")
