"""Streaming U-Net inference on rasters of any size, on CUDA or CPU.

Overlapping tiles are read in pieces of a tile row (an I/O thread reads, decodes to physical
units and normalises with the model's statistics; no-data pixels are set to the band mean,
i.e. 0 after normalisation, and flagged), cut straight into batches laid out as the network
wants them, run through the network in worker streams (two single-threaded ones on a
multi-core CPU, one on CUDA) and blended in order into a one-tile-high accumulator with
smooth (raised-cosine) weights, so tile borders leave no seam. Rows no later tile can touch
are written out as soon as the next tile row starts: memory depends on the tile size, the
batch size and (for the accumulators only) the raster width, never on the raster height.
Tile origins lie on a 32-pixel grid (the network's own), blend weights ignore the outer
quarter of each overlap, and a tile is never larger than the raster needs: tile size and overlap
change speed and memory, not the map. The last tile reaches at most 31 pixels beyond the
border, mirrored; rasters smaller than a tile are one tile.
"""
from __future__ import annotations

import contextlib
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window
from shapely import STRtree, union_all
from shapely.geometry import box, shape

from ..imagery.bands import band_readers
from ..geodesy import ellipsoidal_area_km2, utm_epsg
from ..io import GTIFF_PROFILE, atomic_output, gdal_cache_limit
from . import backends, quantisation
from .ensemble import NO_INT8, check_members, member_models, same_statistics, stacked
from .features import derive
from .model_file import load_model, read_header
from ..progress import Progress
from ..vector import VectorLayer, write_gpkg

PROBABILITY_NODATA_U8 = 255
# How the outputs name their band: the words that tell a prediction from imagery.
PROBABILITY_BAND = "glacier probability"
MASK_BAND = "glacier mask"
PIECE_TILES = 8  # neighbouring tiles read, decoded and normalised in one go
MASK_NODATA = 255


@dataclass
class SegmentOptions:
    tile_size: int = 512
    overlap: int = 128                      # context margin: half of it is never used (blend_weights)
    batch_size: int = 4
    threshold: float | None = None          # None: the model's own
    device: str = "auto"                    # auto, cuda, mps, cpu
    precision: str = "auto"                 # auto, fp32, bf16, fp16, int8 (CPU, onnxruntime or OpenVINO)
    probability_dtype: str = "float32"      # float32 (NaN = no data) or uint8 (0-100, 255)
    bands: dict[str, int] | None = None     # explicit model band -> raster band mapping
    mask_geometries: list = field(default_factory=list)  # in the raster CRS
    mask_buffer_m: float = 0.0
    min_area_km2: float = 0.0
    simplify_m: float = 0.0
    streams: int = 0                        # parallel CPU inference streams; 0: automatic
    rows: tuple[int, int] | None = None     # a block of tile rows [a, b) only (segment_blocks)
    tta: str = "none"                       # test-time augmentation: none, flips, d4
    backend: str = "torch"                  # forward pass on the CPU: auto, torch, onnxruntime, openvino


@dataclass
class SegmentResult:
    probability: Path
    mask: Path | None
    polygons: Path | None
    device: str
    precision: str
    tiles: int
    tiles_skipped: int
    glacier_area_km2: float
    seconds: float
    backend: str = "torch"


DEVICES = ("auto", "cuda", "mps", "cpu")


def torch_build() -> str:
    """Which torch the engine has, in words: version and whether it can use CUDA or Apple GPUs."""
    import torch
    cuda = torch.version.cuda
    mps = getattr(torch.backends, "mps", None)
    kind = (f"CUDA {cuda} build" if cuda else
            "with Apple GPU (MPS) support" if mps is not None and mps.is_built() else "CPU-only build")
    return f"torch {torch.__version__}, {kind}"


def pick_device(device: str = "auto") -> str:
    """auto: a CUDA GPU, else an Apple GPU (mps), else the CPU. A device asked for that this
    torch or machine lacks is refused, saying which torch is installed."""
    import torch
    device = (device or "auto").lower()
    mps = getattr(torch.backends, "mps", None)
    mps_ok = mps is not None and mps.is_available()
    if device not in DEVICES:
        raise ValueError(f"DEVICE must be {', '.join(DEVICES)}, not {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        hint = ("reinstall the engine with its CUDA torch (Install engine, TORCH=cuda)" if not torch.version.cuda
                else "no NVIDIA GPU or driver is visible")
        raise ValueError(f"DEVICE is cuda but torch sees no CUDA GPU ({torch_build()}): {hint}; use DEVICE auto or cpu")
    if device == "mps" and not mps_ok:
        raise ValueError(f"DEVICE is mps but torch sees no Apple GPU ({torch_build()}): mps needs a Mac with "
                         "Apple silicon and macOS 12.3 or later; use DEVICE auto or cpu")
    return device


@contextlib.contextmanager
def named_fallbacks(progress):
    """On Apple GPUs, operators torch has not implemented there run on the CPU (the engine
    sets PYTORCH_ENABLE_MPS_FALLBACK=1 on macOS); torch warns once per operator, and each is
    named once in the log. Other warnings go on as before."""
    import warnings
    seen: list[str] = []
    with warnings.catch_warnings():
        warnings.filterwarnings("always", message=r".*MPS.*")
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            found = re.search(r"operator '([^']+)'.*MPS", str(message))
            if found:
                if found.group(1) not in seen:
                    seen.append(found.group(1))
                return
            shown(message, category, filename, lineno, file, line)
        warnings.showwarning = show
        try:
            yield
        finally:
            warnings.showwarning = shown
            if seen and progress is not None:
                progress.warning("DEVICE mps: operators not implemented on Apple GPUs ran on the CPU (slower): "
                                 + ", ".join(seen))


def cpu_supports_bf16() -> bool:
    import torch
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((probe and probe()) or (amx and amx()))


PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


def pick_precision(precision: str, device: str, backend: str = "torch") -> str:
    """PRECISION as run: auto is the fastest float precision the device has for the BACKEND
    (onnxruntime has no bf16 on the CPU). int8 is never chosen for the user: it is asked
    for, and runs only if the model passes its check (core.segmentation.quantisation)."""
    import torch
    precision = (precision or "auto").lower()
    if precision not in PRECISIONS:
        raise ValueError(f"PRECISION must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if device == "mps" and precision not in ("auto", "fp32"):
        raise ValueError(f"PRECISION {precision} is not used on Apple GPUs (mps): use fp32 or auto")
    if precision != "auto":
        if precision == "fp16" and device == "cpu":
            raise ValueError("PRECISION fp16 is for CUDA; on the CPU use bf16 or fp32")
        if precision == "int8" and device != "cpu":
            raise ValueError(f"PRECISION int8 runs on the CPU (onnxruntime or OpenVINO); DEVICE is {device}: "
                             f"use DEVICE cpu, or PRECISION auto on the GPU")
        return precision
    if device == "mps":
        return "fp32"
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if (backend or "").lower() == "onnxruntime":
        return "fp32"
    return "bf16" if cpu_supports_bf16() else "fp32"


# The U-Net downsamples five times: its output is the same under shifts of 32 pixels only.
# Every tile starts on this grid of the raster, so a pixel meets the network in the same
# phase whatever the tile size (a last tile shifted to end at the border did not: a 2-epoch
# model then flipped 1.6 % of the pixels between 256 and 1024 px tiles).
ALIGN = 32
# From this tile size on (at the default overlap) the tile size no longer changes the map:
# >= 99.5 % of the pixels agree with any larger tile, mean |dp| <= 0.01, even with a barely
# trained model (scripts/bench_invariance.py --tiles; docs/benchmarks.md).
MIN_CONTEXT_TILE = 512


def aligned_stride(tile: int, overlap: int) -> int:
    """The step between tile origins: tile - overlap, rounded down to the alignment (so the
    overlap actually used is at least OVERLAP)."""
    return max(ALIGN, (tile - overlap) // ALIGN * ALIGN)


def blend_weights(size: int, overlap: int) -> np.ndarray:
    """2-D weights over the overlap: 0 (floored to 1e-3) on its outer quarter, where the
    tile's own border is too near for the network to see enough context, a raised-cosine
    ramp over its middle half, 1 in the tile core. Two neighbours' ramps are mirror images
    over the same pixels, so they sum to one there (no seam), and a pixel is taken mostly
    from the tile that sees it from farther inside. Only where no other tile reaches (the
    raster's border) does the floor decide, and there the one tile's value stands."""
    ramp = np.ones(size, np.float32)
    if overlap > 0:
        dead = overlap // 4
        width = overlap - 2 * dead
        t = (np.arange(width, dtype=np.float32) + 0.5) / width
        r = np.concatenate([np.zeros(dead, np.float32), 0.5 - 0.5 * np.cos(np.pi * t), np.ones(dead, np.float32)])
        ramp[:overlap] = r
        ramp[-overlap:] = np.minimum(ramp[-overlap:], r[::-1])
    ramp = np.maximum(ramp, 1e-3)
    return np.outer(ramp, ramp)


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Tile starts covering [0, length), all on the ALIGN grid: the last tile ends at most
    ALIGN - 1 pixels beyond the border (mirrored there), keeping real context before it."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    last = -(-(length - tile) // ALIGN) * ALIGN
    if starts[-1] < last:
        starts.append(last)
    return starts


def effective_tile(tile: int, height: int, width: int) -> int:
    """A tile never larger than the raster needs (rounded up to the alignment): the same
    pixels, the same result, less work and less mirrored padding."""
    return min(tile, max(ALIGN, -(-max(height, width) // ALIGN) * ALIGN))


def fuse_conv_bn(model):
    """Fold each eval-mode BatchNorm into the convolution before it (torch's own
    fuse_conv_bn_eval): same outputs, one pass over the activations fewer per layer."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    def fuse_pair(parent, conv_name, bn_name):
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
        if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
            setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(parent, bn_name, torch.nn.Identity())

    for module in list(model.modules()):
        if isinstance(module, torch.nn.Sequential):
            keys = list(module._modules)
            for a, b in zip(keys, keys[1:]):
                fuse_pair(module, a, b)
        else:  # torchvision ResNet blocks: conv1/bn1, conv2/bn2, ...
            for name in list(module._modules):
                if name.startswith("conv") and "bn" + name[4:] in module._modules:
                    fuse_pair(module, name, "bn" + name[4:])
    return model


def torch_threads() -> int:
    import torch
    return torch.get_num_threads()


def cpu_streams(threads: int, batch_size: int) -> int:
    """Parallel inference streams on the CPU. Two single-threaded streams beat one
    two-threaded forward by a fifth on a 2-core CPU (measured, docs/benchmarks.md): no
    OpenMP barrier per layer, and one stream's serial parts overlap the other's convolutions."""
    return max(1, min(2, threads, batch_size))


_PREPARED: dict = {}  # the last model prepared for inference, by file identity and device
_PREPARED_LOCK = threading.Lock()


def prepared_model(model_path, device: str):
    """(network ready for inference, header), kept for the next call with the same file and
    device: a batch run over many glacier chips loads and prepares the model once. Only
    one model is kept, so memory stays bounded; a rewritten file is loaded anew. A list of
    files is an ensemble: one module whose output channels are the members' logits
    (core.segmentation.ensemble), with MODEL's header."""
    models = [model_path] if isinstance(model_path, (str, Path)) else list(model_path)
    keys = []
    for m in models:
        path = Path(m)
        try:
            st = path.stat()
        except OSError:
            return load_model(path, device=device)  # names the problem
        keys.append((str(path.resolve()), st.st_ino, st.st_mtime_ns, st.st_size))
    key = (tuple(keys), device)
    with _PREPARED_LOCK:
        if key not in _PREPARED:
            _PREPARED.clear()
            loaded = [_prepared(m, device) for m in models]
            _PREPARED[key] = loaded[0] if len(loaded) == 1 else \
                (stacked([net for net, _ in loaded], [h for _, h in loaded]), loaded[0][1])
        return _PREPARED[key]


def _prepared(path, device: str):
    import torch
    model, header = load_model(path, device=device)
    fuse_conv_bn(model)
    if device == "cpu":
        model = model.to(memory_format=torch.channels_last)
    return model, header


TTA = {"none": ((0, False),), "flips": ((0, False), (0, True), (2, False), (2, True)),
       "d4": tuple((k, f) for k in range(4) for f in (False, True))}  # (rot90 k, then flip)


def _dihedral(t, k: int, flip: bool, inverse: bool = False):
    """rot90 k times then a flip of the last axis (or its inverse) on (..., H, W) tensors."""
    if not inverse:
        t = t.rot90(k, dims=(-2, -1))
        return t.flip(-1) if flip else t
    t = t.flip(-1) if flip else t
    return t.rot90(-k, dims=(-2, -1))


class Network:
    """The model on its device, with autocast and channels_last chosen once.

    `run` pipelines batches through `streams` worker threads (each with its share of the
    CPU's threads; one on CUDA, where it keeps the next batch queued while the main thread
    blends and prepares), and hands the results back in submission order."""

    def __init__(self, model_path, device: str, precision: str, streams: int = 1, tta: str = "none",
                 backend: str = "torch", shape=None, progress=None):
        import torch
        if tta not in TTA:
            raise ValueError(f"TTA must be one of {', '.join(TTA)}, not {tta!r}")
        self.torch = torch
        self.device = device
        self.precision = precision
        self.transforms = TTA[tta]
        models = [model_path] if isinstance(model_path, (str, Path)) else list(model_path)
        if len(models) > 1 and precision == "int8":
            raise ValueError(NO_INT8)
        self.model, self.header = prepared_model(models, device)
        # each member's own temperature, fitted on its validation glaciers
        self.temperatures = torch.tensor([float(read_header(m).temperature) for m in models] if len(models) > 1
                                         else [float(self.header.temperature)]).view(1, -1, 1, 1)
        source = models[0] if len(models) == 1 else models  # what the runtimes' caches are keyed by
        self.streams = max(1, int(streams)) if device == "cpu" else 1
        self.threads_per_stream = max(1, torch.get_num_threads() // self.streams)
        channels = len(self.header.bands) + len(self.header.features)
        backend = backends.check_backend(backend, device, precision)
        self.speeds, forward = {}, None
        if backend == "auto" and device != "cpu":
            backend = "torch"  # the other runtimes are the CPU's
        elif backend == "auto":
            views = (shape[0] * len(self.transforms),) + tuple(shape[1:]) if shape else (1, channels, 256, 256)
            backend, self.speeds, forward = backends.choose(self.model, source, self.header, precision,
                                                            self.threads_per_stream, self.streams, views, progress)
        self.backend = backend
        self.forward = forward or backends.make_forward(backend, self.model, source, self.header, device,
                                                        precision, self.threads_per_stream, self.streams, progress)

    def new_batch(self, n: int, channels: int, size: int):
        """An empty (n, channels, size, size) float32 CPU tensor laid out as the network
        wants it (channels_last on the CPU, pinned for fast copies to a GPU): filling it is
        the only copy a tile makes on its way in."""
        torch = self.torch
        if self.device == "cpu":
            return torch.empty((n, size, size, channels)).permute(0, 3, 1, 2)
        return torch.empty((n, channels, size, size), pin_memory=True)

    def __call__(self, batch) -> np.ndarray:
        """(N, C, H, W) normalised float32 (array or tensor) -> (N, M, H, W) glacier probability
        of each of the M members (1 without an ensemble)."""
        torch = self.torch
        x = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(batch)
        x = x.to(self.device, non_blocking=True)
        n = len(x)
        with torch.inference_mode():
            if len(self.transforms) > 1:  # every view of the batch in one forward call
                x = torch.cat([_dihedral(x, k, f) for k, f in self.transforms])
            logits = self.forward(x)
            # The model's temperature (fitted on its validation glaciers) calibrates the
            # probability without moving 0.5; views are averaged as probabilities.
            prob = torch.sigmoid(logits.float() / self.temperatures.to(logits.device))
            if len(self.transforms) > 1:
                prob = torch.stack([_dihedral(prob[i * n:(i + 1) * n], k, f, inverse=True)
                                    for i, (k, f) in enumerate(self.transforms)]).mean(0)
        return prob.cpu().numpy()

    def close(self):
        """Release the runtime (an onnxruntime session, an OpenVINO compiled model and their
        thread pools) here and now, when no forward is running, not at whatever moment the
        garbage collector gets to it."""
        self.forward = None

    def describe(self) -> str:
        if self.device == "cpu":
            return f"{self.backend}, {self.streams} stream(s) x {self.threads_per_stream} thread(s)"
        return self.torch.cuda.get_device_name()

    def why(self) -> str | None:
        """What BACKEND auto measured, for the log."""
        if not self.speeds:
            return None
        measured = ", ".join(f"{k} {v:.2f}" for k, v in sorted(self.speeds.items(), key=lambda kv: -kv[1]))
        return (f"BACKEND auto picked {self.backend}: the fastest installed runtime on this CPU at "
                f"{self.precision} for this model and tile size ({measured} tile views per second on one "
                "stream; measured once, then cached for this model and machine)")

    def run(self, batches):
        """Yield (key, probabilities) for each (key, batch) of the iterable, in order, with
        up to streams + 1 batches in flight (the extra one waits, ready, in the queue).
        The iterable is consumed in the calling thread (it may read, stack and check for
        cancellation); only forward passes run in the workers."""
        from collections import deque
        torch = self.torch
        threads, own_threads = self.threads_per_stream, torch.get_num_threads()
        with ThreadPoolExecutor(self.streams, thread_name_prefix="forward",
                                initializer=lambda: torch.set_num_threads(threads)) as pool:
            inflight = deque()
            # The caller's own torch work (cutting tiles into batches) takes one thread: the
            # cores belong to the streams. Thread counts are per thread, so this is undone below.
            torch.set_num_threads(1)
            try:
                for key, batch in batches:
                    inflight.append((key, pool.submit(self, batch)))
                    if len(inflight) > self.streams:
                        key0, fut = inflight.popleft()
                        yield key0, fut.result()
                while inflight:
                    key0, fut = inflight.popleft()
                    yield key0, fut.result()
            finally:
                torch.set_num_threads(own_threads)
                for _, fut in inflight:
                    fut.cancel()


def _suggest_utm(src) -> str:
    lon = (src.bounds.left + src.bounds.right) / 2
    lat = (src.bounds.bottom + src.bounds.top) / 2
    return f"EPSG:{utm_epsg(lon, lat)}"


def _check_grid(src, header, progress):
    if src.crs is None:
        raise ValueError("INPUT has no CRS: georeference it first")
    if src.crs.is_geographic:
        raise ValueError(f"INPUT is in a geographic CRS ({src.crs}); the model works on a "
                         f"metric {header.pixel_size_m:g} m grid. Reproject it to its local UTM "
                         f"zone ({_suggest_utm(src)}) first, e.g. with GDAL Warp (reproject)")
    res = abs(src.transform.a)
    if not 0.8 <= res / header.pixel_size_m <= 1.25:
        progress.warning(f"INPUT pixels are {res:g} m but the model was trained on "
                         f"{header.pixel_size_m:g} m pixels: results may degrade")


def _pad_tile(arr: np.ndarray, tile: int) -> np.ndarray:
    """Mirror a (C, h, w) array up to (C, tile, tile): for rasters smaller than a tile."""
    ph, pw = tile - arr.shape[1], tile - arr.shape[2]
    if ph <= 0 and pw <= 0:
        return arr
    mode = "reflect" if arr.shape[1] > ph and arr.shape[2] > pw else "symmetric"
    if arr.shape[1] * 2 <= ph or arr.shape[2] * 2 <= pw:
        mode = "edge"
    return np.pad(arr, ((0, 0), (0, max(ph, 0)), (0, max(pw, 0))), mode=mode)


def _tile_plan(src, T: int, stride: int, opts: SegmentOptions):
    """Tile row and column origins, and per tile row the columns to run: all of them, or
    those whose tile touches the MASK_LAYER polygons (buffered)."""
    H, W = src.height, src.width
    ys, xs = tile_origins(H, T, stride), tile_origins(W, T, stride)
    if not opts.mask_geometries:
        return ys, xs, [list(xs) for _ in ys]
    geoms = [g for g in opts.mask_geometries if g is not None and not g.is_empty]
    if not geoms:
        raise ValueError("MASK_LAYER has no geometry")
    # A spatial index queried with a distance, not the buffer of the union of all outlines:
    # buffering thousands of pixel-edged outlines took minutes and gigabytes (bench_scale).
    tree = STRtree(geoms)

    def wanted(y, x):
        left, top = src.transform * (x, y)
        right, bottom = src.transform * (min(x + T, W), min(y + T, H))
        tile = box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
        return len(tree.query(tile, predicate="dwithin", distance=opts.mask_buffer_m)) > 0

    return ys, xs, [[x for x in xs if wanted(y, x)] for y in ys]


def _pieces(plan, T: int, stride: int, first_piece_tiles: int):
    """(tile row, tile columns) pieces of at most PIECE_TILES neighbours, in raster order, so
    that read buffers depend on the tile size and not on the raster width. The first piece
    holds one batch only: the network starts as soon as possible."""
    max_width = T + (PIECE_TILES - 1) * stride
    pieces = []
    for row, row_xs in enumerate(plan):
        for x in row_xs:
            fits = pieces and pieces[-1][0] == row and x + T - pieces[-1][1][0] <= max_width
            if fits and (len(pieces) > 1 or len(pieces[0][1]) < first_piece_tiles):
                pieces[-1][1].append(x)
            else:
                pieces.append((row, [x]))
    return pieces


class _PieceReader:
    """Reads, decodes and normalises the pixels under one piece (called in the I/O thread,
    beside the forward passes: both release the GIL). Two reused buffers: piece i + 2 is
    read while tiles are cut from piece i + 1, and piece i has been cut by then (tiles are
    copied into batches as they are cut)."""

    def __init__(self, readers, header, pieces, ys, T: int, H: int, W: int):
        self.readers, self.header, self.pieces, self.ys = readers, header, pieces, ys
        self.T, self.H, self.W = T, H, W
        h = min(H, T)
        w = max((min(xs[-1] + T, W) - xs[0] for _, xs in pieces), default=1)
        self.features = list(header.features)
        self.pixel_m = abs(readers[0][0].transform.a) if readers else 1.0
        self.buffers = [(np.empty((len(readers) + len(self.features), h, w), np.float32), np.empty((h, w), bool))
                        for _ in range(2)]
        self.dn = [np.empty(h * w, ds.dtypes[b - 1]) for ds, b, _ in readers]

    def __call__(self, i: int):
        """(normalised (C, h, w) float32, no-data mask or None when all pixels are valid)."""
        row, xs = self.pieces[i]
        y, h = self.ys[row], min(self.T, self.H - self.ys[row])
        x0, x1 = xs[0], min(xs[-1] + self.T, self.W)
        strip, invalid = (a[..., :h, :x1 - x0] for a in self.buffers[i % 2])
        invalid[:] = False
        win = Window(x0, y, x1 - x0, h)
        for c, (ds, b, decode) in enumerate(self.readers):
            dn = ds.read(b, window=win, out=self.dn[c][:h * (x1 - x0)].reshape(h, x1 - x0))
            invalid |= decode.standardise(dn, self.header.mean[c], self.header.std[c],
                                          out=strip[c], fill=False)[1]
        if self.features:  # from the decoded bands, as the training patches were
            n = len(self.readers)
            mean, std = np.asarray(self.header.mean, np.float32), np.asarray(self.header.std, np.float32)
            decoded = strip[:n] * std[:n, None, None] + mean[:n, None, None]
            derived = derive(decoded, self.header.bands, self.features, self.pixel_m)
            strip[n:] = (derived - mean[n:, None, None]) / std[n:, None, None]
        if not invalid.any():
            return strip, None
        strip[:, invalid] = 0.0  # a pixel missing in any band is missing in all
        return strip, invalid


class _Mosaic:
    """Tile probabilities blended with smooth weights into a one-tile-high accumulator
    (tiles arrive in raster order, so rows above the current tile row are final); finished
    rows become probability and mask blocks, written in the I/O thread. With M ensemble
    members each is blended apart (blending is linear, so the mean of the blended members
    is the blend of the mean) and the map is their mean; `members` also hands each
    member's rows to `write`."""

    def __init__(self, H: int, W: int, T: int, overlap: int, threshold: float, prob_u8: bool,
                 write, io, n_members: int = 1, members: bool = False):
        self.H, self.W, self.T = H, W, T
        self.weights = blend_weights(T, overlap)
        self.threshold, self.prob_u8, self.write, self.io = threshold, prob_u8, write, io
        self.members = members
        self.rows = min(H, T)
        self.acc = np.zeros((n_members, self.rows, W), np.float32)
        self.wsum = np.zeros((self.rows, W), np.float32)
        self.invalid = np.zeros((self.rows, W), bool)
        self.weighted = np.empty((n_members, T, T), np.float32)
        self.y0 = 0
        self.writes = []

    def add(self, y: int, x: int, prob: np.ndarray, invalid):
        """prob: (M, T, T), one layer per member."""
        if y > self.y0:
            self.flush(y)  # rows above y are final: earlier rows' tiles came first
        h, w = min(self.T, self.H - y), min(self.T, self.W - x)
        r0 = y - self.y0
        np.multiply(prob[:, :h, :w], self.weights[:h, :w], out=self.weighted[:, :h, :w])
        self.acc[:, r0:r0 + h, x:x + w] += self.weighted[:, :h, :w]
        self.wsum[r0:r0 + h, x:x + w] += self.weights[:h, :w]
        if invalid is not None:
            self.invalid[r0:r0 + h, x:x + w] |= invalid[:h, :w]
        while self.writes and self.writes[0].done():
            self.writes.pop(0).result()  # surface write errors early

    def _encoded(self, p, nodata):
        """A probability block as written: uint8 percent (255 no data) or float32 (NaN)."""
        if self.prob_u8:
            np.multiply(p, 100, out=p)
            np.copyto(p, PROBABILITY_NODATA_U8, where=nodata)
            return np.rint(p, out=p).astype(np.uint8)
        np.copyto(p, np.nan, where=self.invalid[:len(p)])
        return p

    def flush(self, upto: int):
        """Write rows [y0, upto), at most the accumulator's height at a time (rows that
        MASK_LAYER skipped are written as no data), and shift the accumulators."""
        n_rows = self.rows
        while self.y0 < upto:
            n = min(upto - self.y0, n_rows)
            with np.errstate(invalid="ignore", divide="ignore"):
                each = np.divide(self.acc[:, :n], self.wsum[:n])  # NaN where no tile ran
                p = each[0] if len(each) == 1 and not self.members else each.mean(0)  # a copy when members are written
                mask = (p >= self.threshold).view(np.uint8)
            nodata = self.invalid[:n] | (self.wsum[:n] == 0)
            np.copyto(mask, MASK_NODATA, where=nodata)
            members = [self._encoded(q, nodata) for q in each] if self.members else None
            out = self._encoded(p, nodata)
            self.writes.append(self.io.submit(self.write, out, mask, Window(0, self.y0, self.W, n), members))
            for arr in (self.acc, self.wsum, self.invalid):
                arr[..., :n_rows - n, :] = arr[..., n:, :]  # numpy copies overlapping ranges correctly
                arr[..., n_rows - n:, :] = 0
            self.y0 += n

    def finish(self, end: int | None = None):
        self.flush(self.H if end is None else end)
        for w in self.writes:
            w.result()


def _open_outputs(stack, src, probability_path, mask_path, prob_u8, tags, rows=None, member_paths=()):
    """(probability dataset, mask dataset or None, temporary mask path, member probability
    datasets) at temporary names that `atomic_output` moves into place only when the run
    completes; `rows` (first, end) makes them that band of rows of INPUT's grid (a block of
    segment_blocks)."""
    # Deflate level 1: a third of the default level's CPU time for a few % more bytes,
    # and still readable by every GIS (ZSTD is faster still but not readable everywhere).
    # Blocks are compressed on all cores: the last ones are, at close, on otherwise idle ones.
    r0, r1 = rows or (0, src.height)
    base = dict(GTIFF_PROFILE, width=src.width, height=r1 - r0, count=1, crs=src.crs,
                transform=src.transform * src.transform.translation(0, r0), ZLEVEL=1,
                NUM_THREADS="ALL_CPUS")
    if rows is not None:  # a block, read once by the join: compressing it would be work twice
        for key in ("compress", "predictor", "ZLEVEL"):
            base.pop(key, None)
    prob_profile = dict(base, dtype="uint8", nodata=PROBABILITY_NODATA_U8) if prob_u8 else \
        dict(base, dtype="float32", nodata=float("nan"), **({"predictor": 3} if "compress" in base else {}))

    def probability(path, what=""):
        dst = stack.enter_context(rasterio.open(stack.enter_context(atomic_output(path)), "w", **prob_profile))
        dst.set_band_description(1, PROBABILITY_BAND + what + (" (%)" if prob_u8 else ""))
        return dst

    members = [probability(path, f", ensemble member {k + 1}") for k, path in enumerate(member_paths)]
    prob_dst = probability(probability_path, ", ensemble mean" if "MEMBERS" in tags else "")
    mask_dst = tmp_mask = None
    if mask_path:
        tmp_mask = stack.enter_context(atomic_output(mask_path))
        mask_dst = stack.enter_context(rasterio.open(
            tmp_mask, "w", **dict(base, dtype="uint8", nodata=MASK_NODATA)))
        mask_dst.set_band_description(1, MASK_BAND)
    for dst in filter(None, (prob_dst, mask_dst)):
        dst.update_tags(**tags)
    for dst, model in zip(members, str(tags.get("MEMBER_PATHS", "")).split("|")):
        own = {k: v for k, v in tags.items() if k not in ("MEMBERS", "MEMBER_PATHS")}
        dst.update_tags(**dict(own, MODEL=Path(model).name, MODEL_PATH=model))
    return prob_dst, mask_dst, tmp_mask, members


def _check_options(opts: SegmentOptions) -> None:
    if opts.tile_size < 32 or opts.tile_size % 32:
        raise ValueError(f"TILE_SIZE must be a multiple of 32 and at least 32, not {opts.tile_size}")
    if not 0 <= opts.overlap <= opts.tile_size // 2:
        raise ValueError(f"OVERLAP must be between 0 and half TILE_SIZE ({opts.tile_size // 2}), not "
                         f"{opts.overlap}: choose larger tiles or a smaller overlap")
    if opts.batch_size < 1:
        raise ValueError("BATCH_SIZE must be at least 1")
    if opts.tta not in TTA:
        raise ValueError(f"TTA must be one of {', '.join(TTA)}, not {opts.tta!r}")


def _tags(src, models, threshold, input_path) -> dict:
    # SOURCE_PATH lets area_change find the imagery's own quality (SCL) band without being told.
    models = [str(Path(m).resolve()) for m in ([models] if isinstance(models, (str, Path)) else models)]
    tags = dict(MODEL=Path(models[0]).name, THRESHOLD=str(threshold), SOURCE=Path(input_path).name,
                SOURCE_PATH=str(Path(input_path).resolve()), MODEL_PATH=models[0],
                **{k: v for k, v in src.tags().items() if k in ("DATE", "DATETIME", "SCENE_ID")})
    if len(models) > 1:  # the mean of an ensemble: every member named (area_change's report lists them)
        tags.update(MODEL=f"{tags['MODEL']} and {len(models) - 1} more (ensemble mean)",
                    MEMBERS=str(len(models)), MEMBER_PATHS="|".join(models))
    return tags


def _check_coverage(src, readers, side: int = 512):
    """Refuse an INPUT without data and a DEM that does not cover it, from a decimated read
    (a bounded cost whatever the raster's size) before any tile runs."""
    shape = (min(side, src.height), min(side, src.width))
    _, band, decoder = next(r for r in readers if r[0] is src)
    valid = ~decoder.invalid(src.read(band, out_shape=shape))
    if not valid.any():
        # A decimated read can miss a small island of data: look at every block before refusing.
        if not any((~decoder.invalid(src.read(band, window=w))).any() for _, w in src.block_windows(band)):
            raise ValueError("INPUT has no valid pixel: every pixel is no data")
        return
    for ds, b, dec in readers:
        if ds is not src:  # the DEM, warped onto INPUT's grid
            dem = ds.read(b, out_shape=shape)
            covered = float((~dec.invalid(dem) & valid).sum() / valid.sum())
            if covered < 0.99:
                raise ValueError(f"DEM covers only {covered:.0%} of INPUT's valid pixels: give a DEM "
                                 "that covers the whole raster (a larger extent or a mosaic)")


def _members(model_path, ensemble, member_paths, precision: str):
    """(MODEL and the ENSEMBLE members, their headers), checked before any work."""
    models = member_models(model_path, ensemble)
    if len(models) == 1:
        if member_paths:
            raise ValueError("OUTPUT_MEMBERS writes each ensemble member's probability: give the members in "
                             "ENSEMBLE, or leave OUTPUT_MEMBERS out")
        return [str(model_path)], [read_header(model_path)]
    if precision == "int8":
        raise ValueError(NO_INT8)
    if member_paths and len(member_paths) != len(models):
        raise ValueError(f"OUTPUT_MEMBERS: {len(member_paths)} rasters for {len(models)} members")
    return models, check_members(models)


def _runtime(opts: SegmentOptions) -> tuple[str, str, int, int]:
    """(device, precision, CPU streams, tiles per stream's batch) on this machine; a backend
    that cannot run is refused here, before any work."""
    device = pick_device(opts.device)
    precision = pick_precision(opts.precision, device, opts.backend)
    backends.check_backend(opts.backend, device, precision)
    streams = (opts.streams or cpu_streams(torch_threads(), opts.batch_size)) if device == "cpu" else 1
    return device, precision, streams, -(-opts.batch_size // streams)  # BATCH_SIZE tiles in flight in all


def _measured_shape(per_batch: int, channels: int, tile: int) -> tuple:
    """The batch BACKEND auto times: tiles of the next power of two, so a batch over chips of
    many sizes measures once per size class, not once per chip."""
    side = 1 << (tile - 1).bit_length()
    return per_batch, channels, side, side


def resolve_runtime(input_path, model_path, dem_path, options: SegmentOptions, *,
                    progress: Progress) -> tuple[str, str, str]:
    """DEVICE, PRECISION and BACKEND as `segment` resolves them on this machine, `auto`
    measured here. A cluster run resolves them once, on one worker, and gives every block
    the answer: workers on other CPUs, or with other thread counts, measure apart and would
    make one map with several runtimes (a CLI run and a Dask run of the same scene differed
    in the 7th digit that way)."""
    opts = options
    device, precision, streams, per_batch = _runtime(opts)
    if opts.backend != "auto":  # nothing to measure: the network is not loaded
        return device, precision, opts.backend
    if device != "cpu":
        return device, precision, "torch"  # as Network: the other runtimes are the CPU's
    header = read_header(model_path if isinstance(model_path, (str, Path)) else model_path[0])
    with rasterio.open(input_path) as src:
        tile = effective_tile(opts.tile_size, src.height, src.width)
    net = Network(model_path, device, precision, streams, opts.tta, opts.backend,
                  _measured_shape(per_batch, len(header.bands) + len(header.features), tile), progress)
    net.close()
    if net.why():
        progress.info(net.why())
    return device, precision, net.backend


def segment(input_path, model_path, probability_path, mask_path=None, polygons_path=None,
            dem_path=None, options: SegmentOptions | None = None,
            progress: Progress | None = None, ensemble=(), member_paths=()) -> SegmentResult:
    """Glacier probability (and mask, polygons) for INPUT with the model in MODEL; with
    ENSEMBLE (the other members' model files) the members' mean, and with `member_paths`
    each member's probability too."""
    opts = options or SegmentOptions()
    progress = progress or Progress()
    t0 = time.perf_counter()
    _check_options(opts)
    device, precision, streams, per_batch = _runtime(opts)
    models, headers = _members(model_path, ensemble, member_paths, precision)
    header = headers[0]
    apart = [Path(m).name for m, h in zip(models[1:], headers[1:]) if not same_statistics(h, header)]
    if apart and opts.rows is None:
        progress.info(f"ENSEMBLE: {', '.join(apart)} normalise(s) the bands with other statistics than MODEL "
                      "(trained apart): the tiles are re-normalised to each member's own inside the network")
    if precision == "int8":
        quantisation.read_samples(model_path, tensors=False)
    threshold = header.threshold if opts.threshold is None else float(opts.threshold)
    if not 0 < threshold < 1:
        raise ValueError(f"THRESHOLD must be between 0 and 1, not {threshold}")

    with contextlib.ExitStack() as stack:
        stack.enter_context(gdal_cache_limit())
        src = stack.enter_context(rasterio.open(input_path))
        _check_grid(src, header, progress)
        readers = band_readers(stack, src, header.bands, opts.bands, dem_path, progress)
        H, W = src.height, src.width
        T = effective_tile(opts.tile_size, H, W)
        stride = aligned_stride(T, opts.overlap)
        overlap = T - stride if max(H, W) > T else 0
        ys, xs, plan = _tile_plan(src, T, stride, opts)
        keep, first = (0, H), 0
        if opts.rows is None:
            _check_coverage(src, readers)
        else:  # a block: its own rows, from every tile that touches them (as a whole run would)
            a, b = opts.rows
            keep = (ys[a] if a else 0, ys[b] if b < len(ys) else H)
            first = next(j for j in range(len(ys)) if ys[j] + T > keep[0])
            plan = [row if first <= j < b else [] for j, row in enumerate(plan)]
        n_tiles, n_total = sum(len(r) for r in plan), len(ys) * len(xs)
        progress.info(f"{W} x {H} pixels, {n_total} tiles of {T} px (overlap {overlap}), "
                      f"{n_tiles} to run, batch {opts.batch_size}")
        if T < MIN_CONTEXT_TILE and max(H, W) > T:
            progress.warning(f"tiles of {T} px see less context than tiles of {MIN_CONTEXT_TILE} px or more: "
                             "the map can differ a little from a run with larger tiles (up to 2 % of the "
                             f"pixels with a barely trained model); use TILE_SIZE {MIN_CONTEXT_TILE} or more "
                             "unless memory forbids")

        prob_u8 = opts.probability_dtype == "uint8"
        tags = _tags(src, models, threshold, input_path)
        prob_dst, mask_dst, tmp_mask, member_dsts = _open_outputs(
            stack, src, probability_path, mask_path, prob_u8, tags, None if opts.rows is None else keep,
            member_paths)
        glacier_px = [0]

        def write_rows(out, mask, window, members=None):
            """Rows of INPUT's grid, those of this run's band (all but in a block)."""
            y, n = window.row_off, window.height
            lo, hi = max(y, keep[0]), min(y + n, keep[1])
            if lo >= hi:
                return
            out, mask = out[lo - y:hi - y], mask[lo - y:hi - y]
            glacier_px[0] += int(np.count_nonzero(mask == 1))
            win = Window(0, lo - keep[0], W, hi - lo)
            prob_dst.write(out, 1, window=win)
            for dst, member in zip(member_dsts, members or ()):
                dst.write(member[lo - y:hi - y], 1, window=win)
            if mask_dst is not None:
                mask_dst.write(mask, 1, window=win)

        io = stack.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="io"))
        mosaic = _Mosaic(H, W, T, overlap, threshold, prob_u8, write_rows, io, len(models), bool(member_dsts))
        mosaic.y0 = ys[first]
        pieces = _pieces(plan, T, stride, per_batch)
        read_piece = _PieceReader(readers, header, pieces, ys, T, H, W)
        first_piece = io.submit(read_piece, 0) if pieces else None  # read while the network loads
        channels = len(readers) + len(header.features)
        net = Network(models, device, precision, streams, opts.tta, opts.backend,
                      _measured_shape(per_batch, channels, T), progress)
        stack.callback(net.close)
        if net.why():
            progress.info(net.why())
        progress.info(f"model: {header.architecture}/{header.encoder}, bands {', '.join(header.bands)}; "
                      f"device {device} ({net.describe()}), precision {precision}"
                      + (f"; an ensemble of {len(models)} members in one network, their mean mapped"
                         if len(models) > 1 else ""))
        # A batch buffer is refilled only after its probabilities were blended: run() keeps
        # at most streams + 1 batches in flight.
        buffers = [net.new_batch(per_batch, channels, T) for _ in range(net.streams + 2)]

        def batches():
            """((row, x, no-data) per tile, batch) in raster order; batches run on across
            pieces and tile rows, so only the last one can be short."""
            keys, n_batches, pending = [], 0, first_piece
            for i, (row, piece_xs) in enumerate(pieces):
                progress.check()
                strip, invalid = pending.result()
                if i + 1 < len(pieces):
                    pending = io.submit(read_piece, i + 1)
                x0 = piece_xs[0]
                for x in piece_xs:
                    batch = buffers[n_batches % len(buffers)]
                    tile = _pad_tile(strip[:, :, x - x0:x - x0 + T], T)
                    batch[len(keys)].copy_(net.torch.from_numpy(tile))
                    keys.append((row, x, None if invalid is None else invalid[:, x - x0:x - x0 + T].copy()))
                    if len(keys) == per_batch:
                        yield keys, batch
                        keys, n_batches = [], n_batches + 1
            if keys:
                yield keys, buffers[n_batches % len(buffers)][:len(keys)]

        done = 0
        for keys, probs in net.run(batches()):
            progress.check()
            for (row, x, invalid), prob in zip(keys, probs):
                mosaic.add(ys[row], x, prob, invalid)
            done += len(keys)
            progress.update(0.95 * done / max(n_tiles, 1), None)
        mosaic.finish(keep[1])
        progress.info(f"{done} tiles in {time.perf_counter() - t0:.1f} s")
        polygons = None
        if polygons_path:
            if mask_dst is None:
                raise ValueError("OUTPUT_POLYGONS needs OUTPUT_MASK")
            mask_dst.close()
            polygons = polygonise(tmp_mask, polygons_path, opts.min_area_km2, opts.simplify_m)
    area_km2 = glacier_px[0] * abs(src.transform.a * src.transform.e) / 1e6
    progress.update(1.0, f"glacier area {area_km2:.3f} km2 (planar)")
    return SegmentResult(Path(probability_path), Path(mask_path) if mask_path else None,
                         polygons, device, precision, n_tiles, n_total - n_tiles, area_km2,
                         time.perf_counter() - t0, net.backend)


POLYGON_ROWS = 1024  # rows of the mask polygonised at once: 11 MB of a 10980 px wide mask


def polygonise(mask_path, polygons_path, min_area_km2=0.0, simplify_m=0.0) -> Path:
    """Glacier polygons (8-connected bodies of the mask): area on the ellipsoid, optional
    filters. The mask is polygonised in blocks of rows, so memory follows a block and the
    bodies still open, not the raster: a body that reaches a block's lower edge is held back
    and joined with the parts of the next block that touch it (rasterio.features.shapes
    polygonises one array; no library carries bodies across blocks). Parts are joined in
    pixel coordinates, where the shared edges are exact integers, then placed on the map."""
    from rasterio import features
    from shapely import affinity
    from rasterio.transform import Affine
    with rasterio.open(mask_path) as src:
        crs, transform, height, width = src.crs.to_wkt(), src.transform, src.height, src.width
        bodies, open_ = [], []
        for r0 in range(0, height, POLYGON_ROWS):
            rows = min(POLYGON_ROWS, height - r0)
            mask = src.read(1, window=Window(0, r0, width, rows))
            parts = [shape(g) for g, _ in features.shapes(mask, mask=mask == 1, connectivity=8,
                                                          transform=Affine.translation(0, r0))]
            del mask
            joined = _join_at_seam(open_, parts, r0)
            last = r0 + rows >= height
            open_ = [g for g in joined if not last and g.bounds[3] >= r0 + rows]
            bodies += [g for g in joined if last or g.bounds[3] < r0 + rows]
    geoms, records = [], []
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
    for body in bodies:
        poly = affinity.affine_transform(body, [a, b, d, e, c, f])
        if simplify_m > 0:
            poly = poly.simplify(simplify_m, preserve_topology=True)
        area = ellipsoidal_area_km2(poly, crs)
        if area < min_area_km2 or poly.is_empty:
            continue
        geoms.append(poly)
        records.append(dict(id=len(records) + 1, area_km2=area))
    return write_gpkg(polygons_path, [VectorLayer("glaciers", crs, geoms, records,
                                                  fields={"id": int, "area_km2": float})])


def _join_at_seam(open_, parts, seam: int) -> list:
    """The bodies after a block: each open body (from above the seam) joined with every part
    below that touches it, transitively (a part may join two open bodies; corners count,
    as in 8-connectivity); untouched open bodies and parts come back as they are."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    if not open_:
        return parts
    tree = STRtree(open_)
    edges = [(int(i), len(open_) + j) for j, part in enumerate(parts) if part.bounds[1] <= seam  # reaches it
             for i in tree.query(part, predicate="intersects")]
    n = len(open_) + len(parts)
    rows, cols = zip(*edges) if edges else ((), ())
    _, label = connected_components(coo_matrix((np.ones(len(edges)), (rows, cols)), shape=(n, n)), directed=False)
    groups: dict[int, list] = {}
    for k, g in enumerate(list(open_) + list(parts)):
        groups.setdefault(int(label[k]), []).append(g)
    return [g[0] if len(g) == 1 else union_all(g) for g in groups.values()]


# --------------------------------------------------------------------------- on a cluster

BLOCK_MIN_TILE_ROWS = 4  # each block recomputes the tile row above it: >= 4 keeps that <= 25 %


def segment_block(input_path, models, dem_path, options, rows, probability_path, mask_path, member_paths=(), *,
                  progress: Progress) -> SegmentResult:
    """One block of tile rows (a Dask task of segment_blocks); its files appear complete.
    `models`: MODEL and the ensemble's other members."""
    from dataclasses import replace
    return segment(input_path, models[0], probability_path, mask_path, None, dem_path,
                   replace(options, rows=tuple(rows)), progress, models[1:], member_paths)


def _block_key(input_path, models, dem_path, opts: SegmentOptions, members: bool = False) -> str:
    """What a block's pixels depend on: a rerun with the same inputs and settings finds them."""
    import hashlib
    import json as _json
    parts = [opts.tile_size, opts.overlap, opts.threshold, opts.device, opts.precision, opts.tta, opts.backend,
             opts.probability_dtype, sorted((opts.bands or {}).items()), opts.mask_buffer_m,
             [g.wkb_hex for g in opts.mask_geometries if g is not None], members]
    from ..identity import file_key
    for path in (input_path, *models, dem_path):
        if path:
            parts += file_key(path)
    return hashlib.sha256(_json.dumps(parts, default=str).encode()).hexdigest()[:16]


def segment_blocks(input_path, model_path, probability_path, mask_path=None, polygons_path=None,
                   dem_path=None, options: SegmentOptions | None = None,
                   progress: Progress | None = None, pool=None, ensemble=(), member_paths=()) -> SegmentResult:
    """`segment` with the raster cut into blocks of tile rows, run as pieces of `pool` (Dask
    tasks), and joined. A block computes every tile that touches its rows, in the order a
    whole run does, so the joined rasters are those of a whole run. Blocks are kept in a
    hidden folder beside the output until the join: a run cut short by a lost scheduler
    resumes from the blocks that are done. An ensemble's members are joined one by one."""
    import shutil
    from dataclasses import replace

    from ..cluster import LocalPool, SchedulerLost
    opts = options or SegmentOptions()
    progress = progress or Progress()
    pool = pool or LocalPool()
    t0 = time.perf_counter()
    _check_options(opts)
    input_path = str(Path(input_path).resolve())
    dem_path = str(Path(dem_path).resolve()) if dem_path else None
    probability_path = Path(probability_path).resolve()
    models, headers = _members(model_path, ensemble, member_paths, opts.precision)
    models, header = [str(Path(m).resolve()) for m in models], headers[0]
    threshold = header.threshold if opts.threshold is None else float(opts.threshold)
    with contextlib.ExitStack() as stack:  # the whole run's checks, once, here
        src = stack.enter_context(rasterio.open(input_path))
        _check_grid(src, header, progress)
        _check_coverage(src, band_readers(stack, src, header.bands, opts.bands, dem_path, progress))
        H, W = src.height, src.width
        T = effective_tile(opts.tile_size, H, W)
        n_rows = len(tile_origins(H, T, aligned_stride(T, opts.overlap)))
    if "auto" in (opts.device, opts.precision, opts.backend):
        [(device, precision, backend)] = pool.run(resolve_runtime, [()], progress.sub(0.0, 0.02),
                                                  gpu=opts.device == "cuda",
                                                  common=(input_path, models, dem_path, opts))
        opts = replace(opts, device=device, precision=precision, backend=backend)
        progress.info(f"every block runs on {device}, precision {precision}, backend {backend} "
                      "(resolved once, on a worker)")
    per_block = max(BLOCK_MIN_TILE_ROWS, -(-n_rows // (2 * pool.workers)))
    blocks = [(a, min(a + per_block, n_rows)) for a in range(0, n_rows, per_block)]
    parts = probability_path.parent / f".{probability_path.stem}.blocks-" \
                                      f"{_block_key(input_path, models, dem_path, opts, bool(member_paths))}"
    parts.mkdir(parents=True, exist_ok=True)
    items, done_before = [], 0
    for k, rows in enumerate(blocks):
        prob_k, mask_k = parts / f"probability_{k}.tif", parts / f"mask_{k}.tif"
        members_k = [str(parts / f"member{m}_{k}.tif") for m in range(len(member_paths))]
        if all(Path(f).is_file() for f in (prob_k, mask_k, *members_k)):  # written atomically: complete
            done_before += 1
            continue
        items.append((rows, str(prob_k), str(mask_k), members_k))
    progress.info(f"{W} x {H} pixels in {len(blocks)} block(s) of {per_block} tile rows on "
                  f"{pool.workers} worker(s)" + (f"; {done_before} block(s) done by an earlier run"
                                                 if done_before else ""))
    keep_parts = False
    try:
        # The options (MASK_LAYER's outlines among them) travel once, not with every block.
        block_opts = replace(opts, min_area_km2=0.0, simplify_m=0.0)
        results = pool.run(segment_block, items, progress.sub(0.02, 0.9), gpu=opts.device == "cuda",
                           common=(input_path, models, dem_path, block_opts))
        polygons, glacier_px = None, 0
        with contextlib.ExitStack() as stack:
            stack.enter_context(gdal_cache_limit())
            src = stack.enter_context(rasterio.open(input_path))
            pixel_km2 = abs(src.transform.a * src.transform.e) / 1e6
            prob_dst, mask_dst, tmp_mask, member_dsts = _open_outputs(
                stack, src, probability_path, mask_path, opts.probability_dtype == "uint8",
                _tags(src, models, threshold, input_path), member_paths=member_paths)
            for k in range(len(blocks)):
                progress.check()
                for name, dst in (("probability", prob_dst), ("mask", mask_dst),
                                  *((f"member{m}", d) for m, d in enumerate(member_dsts))):
                    with rasterio.open(parts / f"{name}_{k}.tif") as blk:
                        y0 = round((blk.transform.f - src.transform.f) / src.transform.e)
                        for r in range(0, blk.height, 1024):  # bounded windows, not whole blocks
                            win = Window(0, r, W, min(1024, blk.height - r))
                            data = blk.read(1, window=win)
                            if name == "mask":
                                glacier_px += int(np.count_nonzero(data == 1))
                            if dst is not None:
                                dst.write(data, 1, window=Window(0, y0 + r, W, win.height))
                progress.update(0.9 + 0.08 * (k + 1) / len(blocks))
            if polygons_path:
                if mask_dst is None:
                    raise ValueError("OUTPUT_POLYGONS needs OUTPUT_MASK")
                mask_dst.close()
                polygons = polygonise(tmp_mask, polygons_path, opts.min_area_km2, opts.simplify_m)
    except SchedulerLost:
        keep_parts = True  # the rerun resumes from them
        raise
    finally:
        if not keep_parts:
            shutil.rmtree(parts, ignore_errors=True)
    area_km2 = glacier_px * pixel_km2
    progress.update(1.0, f"glacier area {area_km2:.3f} km2 (planar)")
    used = results[0] if results else None
    return SegmentResult(probability_path, Path(mask_path) if mask_path else None, polygons,
                         used.device if used else opts.device, used.precision if used else opts.precision,
                         sum(r.tiles for r in results), sum(r.tiles_skipped for r in results), area_km2,
                         time.perf_counter() - t0, used.backend if used else opts.backend)
