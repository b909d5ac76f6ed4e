"""PRECISION int8 (core.segmentation.quantisation, issue 27): calibrated on training patches
stored in the model file, so the int8 graph is the same whichever raster is segmented first;
its map close to fp32's on the synthetic region and on the real everest_west scene, scored
against the RGI outlines; a model that loses more than 0.005 IoU by it refused, checked once;
an older model file refused before any work, saying what to do."""
import hashlib

import numpy as np
import pytest
import rasterio

from glacier_mapper_plugin.core.segmentation import backends, quantisation
from glacier_mapper_plugin.core.segmentation.model_file import load_model, new_model
from glacier_mapper_plugin.core.segmentation.segment import SegmentOptions, pick_precision, segment

from .test_backends import RUNTIMES, Log


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GLACIER_MAPPER_CACHE", str(tmp_path / "cache"))


def _map(image, model, dem, out, progress=None, **kw):
    segment(image, model, out, None, None, dem,
            SegmentOptions(**dict(dict(tile_size=256, overlap=64, device="cpu", precision="fp32"), **kw)), progress)
    with rasterio.open(out) as src:
        return np.nan_to_num(src.read(1), nan=-1.0)


def _int8_graphs(tmp_path):
    return sorted((tmp_path / "cache" / "graphs").glob("*-int8-*.onnx"))


def test_a_trained_model_carries_its_windows_and_still_loads_as_a_network(trained):
    data = quantisation.read_samples(trained)
    calibration, x = data[quantisation.CALIBRATION], data[quantisation.CHECK_X]
    w = quantisation.WINDOW
    assert calibration.dtype == np.float16 and calibration.shape == (quantisation.WINDOWS, 6, w, w)  # 6 bands
    assert x.shape == calibration.shape and data[quantisation.CHECK_Y].shape == x[:, 0].shape
    assert 0 < data[quantisation.CHECK_Y].mean() < 1 and data[quantisation.CHECK_VALID].any()
    assert abs(float(calibration.astype(np.float32).mean())) < 1.5  # standardised, as the network sees them
    network, header = load_model(trained)  # the windows are not weights: a strict load still fits
    assert sum(p.numel() for p in network.parameters()) > 1e6


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_int8_map_agrees_with_fp32_on_the_synthetic_region(small_region, trained, tmp_path, runtime):
    ref = _map(small_region.imagery_end, trained, small_region.dem, tmp_path / "f.tif")
    log = Log()
    got = _map(small_region.imagery_end, trained, small_region.dem, tmp_path / "q.tif", log,
               precision="int8", backend=runtime)
    ok = ref >= 0
    assert 0.02 < (ref >= 0.5)[ok].mean() < 0.98
    assert ((ref >= 0.5) == (got >= 0.5))[ok].mean() >= 0.99
    assert np.abs(ref - got)[ok].mean() <= 0.02
    assert any(line.startswith("int8 graph checked on") for line in log.lines)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_int8_costs_at_most_0005_iou_on_everest_west(khumbu, tmp_path, runtime):
    """The issue's rule on the real scene: int8 offered only where the IoU loss is <= 0.005."""
    def iou(p):
        m = p >= 0.5
        return (m & khumbu.truth).sum() / (m | khumbu.truth).sum()
    ref = _map(khumbu.test, khumbu.model, None, tmp_path / "f.tif")
    got = _map(khumbu.test, khumbu.model, None, tmp_path / "q.tif", precision="int8", backend=runtime)
    assert 0.05 < (ref >= 0.5).mean() < 0.95
    assert iou(got) >= iou(ref) - quantisation.IOU_LOSS_LIMIT
    assert ((ref >= 0.5) == (got >= 0.5)).mean() >= 0.99


def test_the_int8_graph_does_not_depend_on_the_raster_segmented_first(small_region, trained, tmp_path, monkeypatch):
    digests = []
    for i, image in enumerate((small_region.imagery_start, small_region.imagery_end)):
        monkeypatch.setenv("GLACIER_MAPPER_CACHE", str(tmp_path / f"cache{i}"))
        _map(image, trained, small_region.dem, tmp_path / f"{i}.tif", precision="int8", backend="onnxruntime")
        (graph,) = (tmp_path / f"cache{i}" / "graphs").glob("*-int8-*.onnx")
        digests.append(hashlib.sha256(graph.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_a_model_that_loses_iou_by_int8_is_refused_and_checked_once(small_region, trained, tmp_path, monkeypatch):
    monkeypatch.setattr(quantisation, "IOU_LOSS_LIMIT", -1.0)  # every model now loses too much
    for attempt in range(2):
        with pytest.raises(ValueError, match=r"PRECISION int8: quantised, m.gmm loses .* IoU .*use PRECISION fp32"):
            _map(small_region.imagery_end, trained, small_region.dem, tmp_path / "q.tif", precision="int8",
                 backend="onnxruntime")
        assert not (tmp_path / "q.tif").exists()

        def quantised_again(*a):
            raise AssertionError("quantised again: the record kept with the graph was not read")
        monkeypatch.setattr(quantisation, "quantise", quantised_again)
    assert len(_int8_graphs(tmp_path)) == 1


def test_an_unreadable_or_older_record_is_checked_again(small_region, trained, tmp_path):
    _map(small_region.imagery_end, trained, small_region.dem, tmp_path / "a.tif", precision="int8",
         backend="onnxruntime")
    (graph,) = _int8_graphs(tmp_path)
    for broken in ("{half", '{"iou_loss": 0.0}'):  # half written; from an older release
        graph.with_suffix(".json").write_text(broken)
        _map(small_region.imagery_end, trained, small_region.dem, tmp_path / "b.tif", precision="int8",
             backend="onnxruntime")
        assert set(quantisation.json.loads(graph.with_suffix(".json").read_text())) == quantisation.RECORD_KEYS


def test_a_model_file_without_patches_is_refused_before_any_work(small_region, tmp_path):
    model = tmp_path / "old.gmm"
    new_model(model, ["B2", "B3", "B4", "B8", "B11", "DEM"], encoder="resnet18")  # as files before int8
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match="PRECISION int8: the model file old.gmm carries no calibration windows.*"
                                         "train it again, or use PRECISION fp32"):
        _map(small_region.imagery_end, model, small_region.dem, out / "p.tif", precision="int8", backend="auto")
    assert not any(out.iterdir())


def test_int8_is_for_the_cpu_runtimes_only():
    with pytest.raises(ValueError, match="PRECISION int8 runs on the CPU.*DEVICE is cuda"):
        pick_precision("int8", "cuda")
    with pytest.raises(ValueError, match="PRECISION int8 runs on onnxruntime or OpenVINO, not torch"):
        backends.check_backend("torch", "cpu", "int8")
    assert pick_precision("int8", "cpu") == "int8" and pick_precision("auto", "cpu", "onnxruntime") == "fp32"
    assert backends.check_backend("onnxruntime", "cpu", "int8") == "onnxruntime"


def test_auto_at_int8_measures_the_int8_runtimes_only(small_region, trained, tmp_path):
    log = Log()
    _map(small_region.imagery_end, trained, small_region.dem, tmp_path / "a.tif", log, precision="int8",
         backend="auto")
    (said,) = [line for line in log.lines if line.startswith("BACKEND auto picked")]
    assert "onnxruntime " in said and "openvino " in said and "torch " not in said
