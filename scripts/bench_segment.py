"""Segmentation benchmark: our streaming pipeline versus the raw model forward and versus
onnxruntime on the same tiles, measured in one run; and peak memory on a full S2 tile.

    .venv/bin/python scripts/bench_segment.py [--size 4096] [--encoder resnet34]
    .venv/bin/python scripts/bench_segment.py --device cuda   # tiles/s and GPU busy share
    .venv/bin/python scripts/bench_segment.py --memory   # 10980 x 10980, peak RSS
    .venv/bin/python scripts/bench_segment.py --chips 200 --encoder resnet18   # a batch through the engine
    .venv/bin/python scripts/bench_segment.py --backends --size 2048   # torch, onnxruntime, OpenVINO (issue 27)
    .venv/bin/python scripts/bench_segment.py --members 5 --encoder resnet18   # an ensemble: M calls or one

Two forward baselines on the same tiles and precision: the raw forward (the model called
batch after batch, torch's default threads) and, stricter, the bare network spread over the
pipeline's own streams. Rounds
alternate raw and pipeline so that both see the same machine; the best of each is compared.
On the CPU it also prints the CPU-time budget: the pipeline's own work (network replaced by
a cheap function) against the network's, which bounds the ratio when every core is busy.
Ratios are what matter; results go to docs/benchmarks.md.
"""
import argparse
import copy
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from glacier_mapper_plugin.core.segmentation import segment as segment_module  # noqa: E402
from glacier_mapper_plugin.core.io import GTIFF_PROFILE  # noqa: E402
from glacier_mapper_plugin.core.segmentation.model_file import new_model  # noqa: E402
from glacier_mapper_plugin.core.segmentation.segment import (Network, SegmentOptions, cpu_streams,  # noqa: E402
                                                pick_device, pick_precision, segment, tile_origins,
                                                aligned_stride, effective_tile,
                                                torch_threads)
from glacier_mapper_plugin.core.imagery.synthetic import make_region  # noqa: E402

BANDS = ["B2", "B3", "B4", "B8", "B12", "DEM"]


def write_mirrored(block, path: Path, size: int, profile, descriptions, tags) -> Path:
    """A size x size raster made of `block` (C, n, n) mirrored across it, so that it looks
    like real terrain everywhere (compression and decoding cost what they cost)."""
    prof = dict(GTIFF_PROFILE, **profile, width=size, height=size, count=block.shape[0])
    n = block.shape[1]
    with rasterio.open(path, "w", **prof) as dst:
        dst.descriptions = tuple(descriptions)
        dst.update_tags(**tags)
        for y in range(0, size, n):
            for x in range(0, size, n):
                h, w = min(n, size - y), min(n, size - x)
                flip = block[:, ::-1] if (y // n) % 2 else block
                flip = flip[:, :, ::-1] if (x // n) % 2 else flip
                dst.write(flip[:, :h, :w], window=Window(x, y, w, h))
    return path


def make_big_raster(path: Path, size: int, seed: int = 0) -> Path:
    """A size x size 6-band (B2..B12, DEM) uint16 raster tiled from a synthetic region."""
    region = make_region(path.parent / "region", seed=seed, size_km=4.0)
    with rasterio.open(region.imagery_end) as src, rasterio.open(region.dem) as dem:
        block = np.concatenate([src.read([1, 2, 3, 4, 5]), dem.read().astype(np.uint16)])
        profile = dict(dtype="uint16", nodata=0, crs=src.crs, transform=src.transform)
        tags = src.tags()
    block[:, block[0] == 0] = 1000  # no no-data strip in the benchmark raster
    return write_mirrored(block, path, size, profile, BANDS, tags)


def count_tiles(size, tile, overlap):
    tile = effective_tile(tile, size, size)
    return len(tile_origins(size, tile, aligned_stride(tile, overlap))) ** 2


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def bench_streamed(net, n_tiles, opts):
    """The network alone on ready-made tiles, batched and spread over streams exactly as
    the pipeline does (BATCH_SIZE tiles in flight, shared by the streams):
    (tiles/s, CPU seconds)."""
    per = -(-opts.batch_size // net.streams)
    rng = np.random.default_rng(0)
    batch = net.new_batch(per, len(BANDS), opts.tile_size)  # laid out as the pipeline's batches
    batch.copy_(net.torch.from_numpy(rng.standard_normal(tuple(batch.shape)).astype(np.float32)))
    sizes = [per] * (n_tiles // per) + ([n_tiles % per] if n_tiles % per else [])
    c0, t0 = cpu_seconds(), time.perf_counter()
    for _ in net.run((None, batch[:k]) for k in sizes):
        pass
    return n_tiles / (time.perf_counter() - t0), cpu_seconds() - c0


def bench_raw(net, n_tiles, opts):
    """The raw forward: the network called batch after batch of BATCH_SIZE tiles with torch's
    default threads, the loop a user would write (tiles/s, CPU seconds)."""
    rng = np.random.default_rng(0)
    batch = net.new_batch(opts.batch_size, len(BANDS), opts.tile_size)
    batch.copy_(net.torch.from_numpy(rng.standard_normal(tuple(batch.shape)).astype(np.float32)))
    c0, t0 = cpu_seconds(), time.perf_counter()
    for b0 in range(0, n_tiles, opts.batch_size):
        net(batch[:min(opts.batch_size, n_tiles - b0)])
    return n_tiles / (time.perf_counter() - t0), cpu_seconds() - c0


def bench_pipeline(raster, model, n_tiles, opts, tmp):
    c0, t0 = cpu_seconds(), time.perf_counter()
    segment(raster, model, tmp / "p.tif", tmp / "m.tif", options=opts)
    return n_tiles / (time.perf_counter() - t0), cpu_seconds() - c0


class NoNetwork(segment_module.Network):
    """The pipeline's network replaced by a cheap smooth function of the input: what the
    pipeline costs on its own (read, decode, normalise, cut, blend, write)."""

    def __call__(self, batch):
        b = batch if isinstance(batch, np.ndarray) else batch.numpy()
        return 1 / (1 + np.exp(-b[:, 3:4]))  # (N, members, H, W), one member


class GpuTimedNetwork(segment_module.Network):
    """The pipeline's network with CUDA events around each batch (copy in, forward, copy
    out): the share of the run the GPU is busy with our work."""
    events: list = []

    def __call__(self, batch):
        cuda = self.torch.cuda
        start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
        start.record()
        out = super().__call__(batch)
        end.record()
        GpuTimedNetwork.events.append((start, end))
        return out


def gpu_busy_share(raster, model, n_tiles, opts, tmp):
    """(tiles/s, share of the wall time the GPU spent on our batches)."""
    real, segment_module.Network = segment_module.Network, GpuTimedNetwork
    GpuTimedNetwork.events = []
    try:
        tiles_s, _ = bench_pipeline(raster, model, n_tiles, opts, tmp)
    finally:
        segment_module.Network = real
    import torch
    torch.cuda.synchronize()
    busy_ms = sum(a.elapsed_time(b) for a, b in GpuTimedNetwork.events)
    return tiles_s, busy_ms / 1000 / (n_tiles / tiles_s)


def io_cpu_seconds(raster, model, opts, tmp):
    real = segment_module.Network
    segment_module.Network = NoNetwork
    try:
        c0 = cpu_seconds()
        segment(raster, model, tmp / "p.tif", tmp / "m.tif", options=opts)
        return cpu_seconds() - c0
    finally:
        segment_module.Network = real


def bench_onnx(model, n_tiles, opts, tmp):
    import onnxruntime as ort
    import torch
    net = Network(model, "cpu", "fp32")
    onnx_path = tmp / "model.onnx"
    dummy = torch.zeros(1, len(BANDS), opts.tile_size, opts.tile_size)
    exported = copy.deepcopy(net.model).to(memory_format=torch.contiguous_format)  # not the cached one
    torch.onnx.export(exported, dummy, str(onnx_path),
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
                      dynamo=False)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((opts.batch_size, len(BANDS), opts.tile_size, opts.tile_size)).astype(np.float32)
    sess.run(None, {"x": batch[:1]})
    t0 = time.perf_counter()
    done = 0
    while done < n_tiles:
        b = min(opts.batch_size, n_tiles - done)
        sess.run(None, {"x": batch[:b]})
        done += b
    return n_tiles / (time.perf_counter() - t0)


def run_speed(args):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        raster = make_big_raster(tmp / "big.tif", args.size)
        model = tmp / "m.gmm"
        new_model(model, BANDS, mean=[0.25] * 5 + [2600.0], std=[0.2] * 5 + [400.0],
                  encoder=args.encoder)
        device = pick_device(args.device)
        precision = pick_precision(args.precision, device)
        streams = (args.streams or cpu_streams(torch_threads(), args.batch)) if device == "cpu" else 1
        opts = SegmentOptions(tile_size=args.tile, overlap=args.overlap, batch_size=args.batch,
                              precision=precision, device=device, streams=streams,
                              probability_dtype=args.probability)
        n = count_tiles(args.size, args.tile, args.overlap)
        print(f"{args.size}x{args.size} x6, {n} tiles of {args.tile} (overlap {args.overlap}), "
              f"batch {args.batch}, {args.encoder}, {device}, precision {precision}, {streams} stream(s), "
              f"{args.probability} probability", flush=True)
        net = Network(model, device, precision, streams)
        net(net.new_batch(1, len(BANDS), args.tile).zero_())  # warm-up
        bench_pipeline(raster, model, n, opts, tmp)  # warm-up: caches, kernels for these shapes
        net(net.new_batch(args.batch, len(BANDS), args.tile).zero_())
        raws, streamed, ours = [], [], []
        for i in range(args.rounds):  # alternating, so that all see the same machine
            raws.append(bench_raw(net, n, opts))
            streamed.append(bench_streamed(net, n, opts))
            ours.append(bench_pipeline(raster, model, n, opts, tmp))
            print(f"round {i + 1}: raw forward {raws[-1][0]:.3f} tiles/s, streamed forward "
                  f"{streamed[-1][0]:.3f}, pipeline {ours[-1][0]:.3f} -> {ours[-1][0] / raws[-1][0]:.3f} x raw, "
                  f"{ours[-1][0] / streamed[-1][0]:.3f} x streamed", flush=True)
        raw = max(r[0] for r in raws)
        streamed_best, pipe = max(r[0] for r in streamed), max(o[0] for o in ours)
        print(f"best raw forward: the model batch after batch of {args.batch}, torch's threads ({precision}): "
              f"{raw:.3f} tiles/s")
        print(f"best streamed forward, as in the pipeline ({precision}): {streamed_best:.3f} tiles/s", flush=True)
        print(f"best pipeline end to end ({precision}): {pipe:.3f} tiles/s  -> {pipe / raw:.3f} x raw "
              f"forward, {pipe / streamed_best:.3f} x streamed forward", flush=True)
        result = dict(size=args.size, tiles=n, encoder=args.encoder, device=device, precision=precision,
                      streams=streams, probability=args.probability, rounds=args.rounds,
                      raw_tiles_s=raw, pipeline_vs_raw=pipe / raw,
                      streamed_tiles_s=streamed_best, pipeline_vs_streamed=pipe / streamed_best,
                      pipeline_tiles_s=pipe, rounds_vs_raw=[o[0] / r[0] for o, r in zip(ours, raws)],
                      rounds_vs_streamed=[o[0] / r[0] for o, r in zip(ours, streamed)])
        if device == "cuda":
            tiles_s, busy = gpu_busy_share(raster, model, n, opts, tmp)
            print(f"GPU ({net.describe()}): pipeline {tiles_s:.2f} tiles/s, GPU busy {100 * busy:.1f} % of the run",
                  flush=True)
            result.update(gpu=net.describe(), gpu_run_tiles_s=tiles_s, gpu_busy_share=busy)
        else:
            # The CPU budget: with every core busy, the pipeline's own work can only be hidden
            # behind the network's to the extent the machine has cores to spare.
            fwd_cpu = min(r[1] for r in streamed)
            io_cpu = io_cpu_seconds(raster, model, opts, tmp)
            print(f"CPU seconds: network {fwd_cpu:.2f}, pipeline without the network {io_cpu:.2f} -> "
                  f"bound with {torch_threads()} busy cores {fwd_cpu / (fwd_cpu + io_cpu):.3f} x streamed", flush=True)
            result.update(network_cpu_s=fwd_cpu, pipeline_without_network_cpu_s=io_cpu)
        ours = pipe
        if not args.no_onnx and device == "cpu":
            onnx = bench_onnx(model, n, opts, tmp)
            print(f"onnxruntime fp32 CPU:         {onnx:.3f} tiles/s  -> pipeline is {ours / onnx:.3f} x onnxruntime", flush=True)
            result.update(onnx_tiles_s=onnx, pipeline_vs_onnx=ours / onnx)
        print(json.dumps(result))


def cpu_features() -> str:
    """The CPU as the runtimes see it: model, cores and the vector/matrix units they use."""
    import os
    import platform
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    units = [f for f in ("avx2", "fma", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
                         "amx_int8") if f in flags]
    return f"{name}, {os.cpu_count()} logical cores, {' '.join(units) or 'no AVX2'}"


def bench_bare(net, n_tiles, opts):
    """One runtime's bare forward: the network alone, batch after batch of BATCH_SIZE tiles,
    one stream with every thread (no sigmoid, no views): what a plugin calling the runtime
    directly gets."""
    rng = np.random.default_rng(0)
    x = net.torch.from_numpy(rng.standard_normal((opts.batch_size, len(BANDS), opts.tile_size, opts.tile_size),
                                                 dtype=np.float32))
    with net.torch.inference_mode():
        net.forward(x[:1])
        t0 = time.perf_counter()
        for b0 in range(0, n_tiles, opts.batch_size):
            net.forward(x[:min(opts.batch_size, n_tiles - b0)])
    return n_tiles / (time.perf_counter() - t0)


def run_backends(args):
    """Every installed runtime at fp32 first (bare forward and our pipeline end to end, rounds
    alternating so that all see the same machine), each pipeline against onnxruntime's bare
    forward; then each at its best precision on this CPU; then TTA's views per second."""
    from dataclasses import replace
    from glacier_mapper_plugin.core.segmentation import backends
    runtimes = [b for b in ("torch", "onnxruntime", "openvino") if b in backends.versions()]
    print(f"CPU: {cpu_features()}; runtimes: " + ", ".join(f"{k} {v}" for k, v in backends.versions().items()), flush=True)
    import os
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["GLACIER_MAPPER_CACHE"] = str(tmp / "cache")  # graphs exported afresh, not left behind
        raster = make_big_raster(tmp / "big.tif", args.size)
        model = tmp / "m.gmm"
        new_model(model, BANDS, mean=[0.25] * 5 + [2600.0], std=[0.2] * 5 + [400.0], encoder=args.encoder)
        n = count_tiles(args.size, args.tile, args.overlap)
        streams = args.streams or cpu_streams(torch_threads(), args.batch)
        base = SegmentOptions(tile_size=args.tile, overlap=args.overlap, batch_size=args.batch, precision="fp32",
                              device="cpu", streams=streams, probability_dtype=args.probability)
        print(f"{args.size}x{args.size} x6, {n} tiles of {args.tile} (overlap {args.overlap}), batch {args.batch}, "
              f"{args.encoder}, {streams} stream(s) in the pipeline", flush=True)
        nets = {b: Network(model, "cpu", "fp32", 1, backend=b) for b in runtimes}
        if args.int8_only:
            int8 = [r for r in runtimes if r != "torch"]
            print(json.dumps(dict(cpu=cpu_features(), size=args.size, tiles=n, encoder=args.encoder, streams=streams,
                                  int8=run_int8(raster, model, n, base, int8, nets[int8[0]], args, tmp))))
            return
        for b in runtimes:  # warm-up: graphs exported and compiled, kernels for these shapes
            bench_pipeline(raster, model, n, replace(base, backend=b), tmp)
        bare, pipe = {b: [] for b in runtimes}, {b: [] for b in runtimes}
        for i in range(args.rounds):
            for b in runtimes:
                bare[b].append(bench_bare(nets[b], n, base))
                pipe[b].append(bench_pipeline(raster, model, n, replace(base, backend=b), tmp)[0])
            print(f"round {i + 1}: " + "; ".join(f"{b} bare {bare[b][-1]:.3f}, pipeline {pipe[b][-1]:.3f}"
                                                 for b in runtimes), flush=True)
        ref = max(bare["onnxruntime"]) if "onnxruntime" in bare else max(bare["torch"])
        ref_name = "onnxruntime" if "onnxruntime" in bare else "torch"
        print(f"\n| runtime (fp32) | bare forward, tiles/s | our pipeline end to end, tiles/s | pipeline / "
              f"{ref_name} bare forward |\n|---|---|---|---|")
        result = dict(cpu=cpu_features(), size=args.size, tiles=n, encoder=args.encoder, streams=streams, fp32={})
        for b in runtimes:
            print(f"| {b} {backends.versions()[b]} | {max(bare[b]):.3f} | {max(pipe[b]):.3f} | {max(pipe[b]) / ref:.3f} |")
            result["fp32"][b] = dict(bare=max(bare[b]), pipeline=max(pipe[b]), vs_ref=max(pipe[b]) / ref)
        best = max(runtimes, key=lambda b: max(pipe[b]))
        # the streamed bound with the fastest runtime: can read, decode, blend and write keep up?
        net = Network(model, "cpu", "fp32", streams, backend=best)
        fwd_cpu = min(bench_streamed(net, n, base)[1] for _ in range(2))
        io_cpu = io_cpu_seconds(raster, model, base, tmp)  # the network replaced: any runtime
        bound = fwd_cpu / (fwd_cpu + io_cpu)
        print(f"\nfastest pipeline: {best}; CPU seconds: network {fwd_cpu:.2f}, pipeline without the network "
              f"{io_cpu:.2f} -> streamed bound {bound:.3f}", flush=True)
        result.update(best=best, streamed_bound=bound)
        bf16 = segment_module.cpu_supports_bf16()
        if bf16:
            for b in [r for r in runtimes if r != "onnxruntime"]:
                t = max(bench_pipeline(raster, model, n, replace(base, backend=b, precision="bf16"), tmp)[0]
                        for _ in range(args.rounds))
                print(f"{b} bf16 pipeline: {t:.3f} tiles/s ({t / ref:.3f} x {ref_name} fp32 bare)")
                result.setdefault("bf16", {})[b] = t
        else:
            print("bf16: this CPU has neither AVX-512 BF16 nor AMX: every runtime's best here is fp32")
        int8 = [r for r in runtimes if r != "torch"]
        if int8:
            result["int8"] = run_int8(raster, model, n, base, int8, nets[int8[0]], args, tmp)
        for tta in args.tta:
            if tta == "none":
                continue
            views = len(segment_module.TTA[tta])
            t = max(bench_pipeline(raster, model, n, replace(base, backend=best, tta=tta), tmp)[0]
                    for _ in range(args.rounds))
            print(f"TTA {tta} with {best}: {t:.3f} tiles/s = {t * views:.3f} tile views/s "
                  f"({t * views / max(pipe[best]):.3f} x the views/s without TTA)")
            result.setdefault("tta", {})[tta] = dict(tiles_s=t, views_s=t * views)
        print(json.dumps(result))


def run_members(args):
    """Issue 27 item 6: an ensemble of M members on the same batches, each runtime at fp32
    with all the cores: M calls per batch (one session per member, as M runs of
    segment_glaciers would make) against one call of the graph segment_glaciers' ENSEMBLE
    runs (every member's logits in one output). Prints members x tiles per second for both,
    in alternating rounds; then end to end on a --size raster, in alternating rounds: M runs
    of segment against one run with ENSEMBLE, and that run with TTA flips (members x flips x
    tiles per second), on each runtime."""
    import os

    import torch

    from glacier_mapper_plugin.core.segmentation import backends
    from dataclasses import replace

    from glacier_mapper_plugin.core.segmentation.segment import prepared_model
    threads, m = torch_threads(), args.members
    print(f"CPU: {cpu_features()}; runtimes: " + ", ".join(f"{k} {v}" for k, v in backends.versions().items()), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["GLACIER_MAPPER_CACHE"] = str(tmp / "cache")
        models = [tmp / f"m{k}.gmm" for k in range(m)]
        for k, path in enumerate(models):  # members that differ by their seed, as train_model's MEMBERS makes them
            new_model(path, BANDS, mean=[0.25] * 5 + [2600.0], std=[0.2] * 5 + [400.0], encoder=args.encoder, seed=k)
        graphs = [backends.export_graph(prepared_model(path, "cpu")[0], len(BANDS), tmp / f"m{k}.onnx")
                  for k, path in enumerate(models)]
        stacked = backends.export_graph(prepared_model(models, "cpu")[0], len(BANDS), tmp / "stacked.onnx")
        runtimes = {"onnxruntime": lambda g: backends.OnnxRuntimeForward(g, threads),
                    "openvino": lambda g: backends.OpenVinoForward(g, threads, 1, "fp32")}
        runtimes = {k: v for k, v in runtimes.items() if k in backends.versions()}
        x = torch.from_numpy(np.random.default_rng(0).standard_normal((args.batch, len(BANDS), args.tile, args.tile),
                                                                       dtype=np.float32))
        print(f"{m} members, {args.encoder}, batches of {args.batch} tiles of {args.tile} px, {threads} thread(s)",
              flush=True)
        result = dict(cpu=cpu_features(), members=m, encoder=args.encoder, batch=args.batch, tile=args.tile)
        calls = {}
        for name, make in runtimes.items():
            separate, one = [make(g) for g in graphs], make(stacked)
            assert tuple(one(x).shape) == (args.batch, m, args.tile, args.tile)
            calls[name] = dict(separate=lambda fs=separate: [f(x) for f in fs], stacked=lambda f=one: f(x))
            for fn in calls[name].values():
                fn()  # warm-up
        best = {(r, k): 0.0 for r in calls for k in ("separate", "stacked")}
        for i in range(args.rounds):
            for (r, k) in best:
                t = time.perf_counter()
                calls[r][k]()
                best[r, k] = max(best[r, k], m * args.batch / (time.perf_counter() - t))
            print(f"round {i + 1}: " + "; ".join(f"{r} {k} {v:.3f}" for (r, k), v in best.items()), flush=True)
        calls.clear()  # the sessions' memory back before the end-to-end runs
        raster = make_big_raster(tmp / "big.tif", args.size)
        n = count_tiles(args.size, args.tile, args.overlap)
        end = {r: [0.0, 0.0, 0.0] for r in runtimes}  # best of the rounds, alternating runtimes
        views = len(segment_module.TTA["flips"])
        for r in runtimes:  # warm-up: graphs exported and compiled
            segment(raster, models[0], tmp / "warm.tif", options=SegmentOptions(
                tile_size=args.tile, overlap=args.overlap, batch_size=args.batch, precision="fp32", backend=r),
                ensemble=models[1:])
        for i in range(args.rounds):
            for r in runtimes:
                opts = SegmentOptions(tile_size=args.tile, overlap=args.overlap, batch_size=args.batch,
                                      precision="fp32", backend=r)
                t = time.perf_counter()
                for k, path in enumerate(models):
                    segment(raster, path, tmp / f"p{k}.tif", options=opts)
                separate = m * n / (time.perf_counter() - t)
                t = time.perf_counter()
                segment(raster, models[0], tmp / "mean.tif", options=opts, ensemble=models[1:])
                one = m * n / (time.perf_counter() - t)
                t = time.perf_counter()  # members and flips together: every view of every member in one call
                segment(raster, models[0], tmp / "flips.tif", options=replace(opts, tta="flips"), ensemble=models[1:])
                flips = m * views * n / (time.perf_counter() - t)
                end[r] = [max(a, b) for a, b in zip(end[r], (separate, one, flips))]
                print(f"end to end, round {i + 1}, {r}: {m} runs {separate:.3f}, one run with ENSEMBLE {one:.3f} "
                      f"members x tiles/s; with TTA flips {flips:.3f} members x flips x tiles/s", flush=True)
        print("\n| runtime (fp32) | network: M calls per batch, members x tiles/s | one call, all members stacked | "
              f"stacked / separate | end to end ({args.size} px): M runs of segment | one run with ENSEMBLE | "
              "ENSEMBLE / M runs | ENSEMBLE + TTA flips, members x flips x tiles/s |\n|---|---|---|---|---|---|---|---|")
        for r in runtimes:
            sep, one = best[r, "separate"], best[r, "stacked"]
            print(f"| {r} {backends.versions()[r]} | {sep:.3f} | {one:.3f} | {one / sep:.3f} | {end[r][0]:.3f} | "
                  f"{end[r][1]:.3f} | {end[r][1] / end[r][0]:.3f} | {end[r][2]:.3f} |")
            result[r] = dict(separate=sep, stacked=one, end_to_end_separate=end[r][0], end_to_end_ensemble=end[r][1],
                             end_to_end_ensemble_flips=end[r][2])
        print(json.dumps(result))


def with_int8_samples(model: Path, out: Path, n_bands: int) -> Path:
    """The benchmark's untrained model with the patches PRECISION int8 needs (a trained model
    stores its training patches): speed only; the IoU cost is measured by bench_accuracy.py
    on a real scene. The check labels are the fp32 network's own mask, so the record's int8
    IoU is its agreement with fp32."""
    import torch
    from glacier_mapper_plugin.core.segmentation import quantisation
    from glacier_mapper_plugin.core.segmentation.model_file import load_model, save_model
    network, header = load_model(model)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((8, n_bands, 128, 128), dtype=np.float32))
    with torch.no_grad():
        y = network(x)[:, 0] >= 0
    save_model(out, network, header, {quantisation.CALIBRATION: x.half(), quantisation.CHECK_X: x.half(),
                                      quantisation.CHECK_Y: y.to(torch.uint8),
                                      quantisation.CHECK_VALID: torch.ones_like(y, dtype=torch.uint8)})
    return out


def run_int8(raster, model, n, base, runtimes, ref_net, args, tmp) -> dict:
    """PRECISION int8 on the runtimes that run it: bare forward and pipeline, in rounds that
    alternate with the fp32 reference's bare forward (onnxruntime's), and the streamed bound
    with the fastest."""
    from dataclasses import replace

    from glacier_mapper_plugin.core.segmentation import quantisation
    # an untrained network's logits sit at the threshold, so its int8 map would be refused:
    # this benchmark is about speed (the IoU cost: bench_accuracy.py --precision fp32 int8)
    quantisation.IOU_LOSS_LIMIT = float("inf")
    model = with_int8_samples(model, tmp / "m_int8.gmm", len(BANDS))
    opts = replace(base, precision="int8")
    nets = {b: Network(model, "cpu", "int8", 1, backend=b) for b in runtimes}
    for b in runtimes:
        bench_pipeline(raster, model, n, replace(opts, backend=b), tmp)
    bare, pipe, refs = {b: [] for b in runtimes}, {b: [] for b in runtimes}, []
    for i in range(args.rounds):
        refs.append(bench_bare(ref_net, n, base))
        for b in runtimes:
            bare[b].append(bench_bare(nets[b], n, opts))
            pipe[b].append(bench_pipeline(raster, model, n, replace(opts, backend=b), tmp)[0])
        print(f"int8 round {i + 1}: {ref_net.backend} fp32 bare {refs[-1]:.3f}; "
              + "; ".join(f"{b} bare {bare[b][-1]:.3f}, pipeline {pipe[b][-1]:.3f}" for b in runtimes), flush=True)
    ref = max(refs)
    print(f"\n| runtime (int8) | bare forward, tiles/s | our pipeline end to end, tiles/s | pipeline / "
          f"{ref_net.backend} fp32 bare forward ({ref:.3f}, same rounds) |\n|---|---|---|---|")
    out = {}
    for b in runtimes:
        print(f"| {b} int8 | {max(bare[b]):.3f} | {max(pipe[b]):.3f} | {max(pipe[b]) / ref:.3f} |")
        out[b] = dict(bare=max(bare[b]), pipeline=max(pipe[b]), vs_ref=max(pipe[b]) / ref)
    best = max(runtimes, key=lambda b: max(pipe[b]))
    net = Network(model, "cpu", "int8", opts.streams, backend=best)
    fwd_cpu = min(bench_streamed(net, n, opts)[1] for _ in range(2))
    io_cpu = io_cpu_seconds(raster, model, replace(opts, backend=best), tmp)
    bound = fwd_cpu / (fwd_cpu + io_cpu)
    print(f"fastest int8 pipeline: {best}; CPU seconds: network {fwd_cpu:.2f}, pipeline without the network "
          f"{io_cpu:.2f} -> streamed bound {bound:.3f}", flush=True)
    return dict(out, best=best, streamed_bound=bound, fp32_reference=ref)


def run_memory(args):
    """Peak RSS of a child process that segments a whole 10980 x 10980 raster (all tiles)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        size = 10980
        raster = make_big_raster(tmp / "s2tile.tif", size)
        model = tmp / "m.gmm"
        new_model(model, BANDS, mean=[0.25] * 5 + [2600.0], std=[0.2] * 5 + [400.0], encoder=args.encoder)
        code = f"""
import resource, sys, time
sys.path.insert(0, {str(ROOT)!r})
import rasterio
from glacier_mapper_plugin.core.segmentation.segment import SegmentOptions, segment
with rasterio.open({str(raster)!r}) as src:
    b = src.bounds
t0 = time.time()
r = segment({str(raster)!r}, {str(model)!r}, {str(tmp / 'p.tif')!r}, {str(tmp / 'm.tif')!r},
            options=SegmentOptions(tile_size={args.tile}, overlap={args.overlap}, batch_size={args.batch},
                                   precision={args.precision!r}))
print("tiles", r.tiles, "seconds", round(time.time() - t0, 1), "tiles/s", round(r.tiles / (time.time() - t0), 2), r.precision)
print("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        print(out.stdout, out.stderr[-2000:])


def run_chips(args):
    """A batch over per-glacier chips (what the batch dialog does: one run per chip), in this
    process (core.segmentation.segment in a loop: the in-process figure) and through the engine client QGIS
    uses (engine/client.py: one engine for the session, one job per chip), alternating
    halves so that both see the same machine; the ratio is the cost of running outside QGIS."""
    import os
    from glacier_mapper_plugin.core.segmentation.model_file import new_model
    from glacier_mapper_plugin.core.segmentation.segment import SegmentOptions, segment
    from glacier_mapper_plugin.engine import client
    os.environ.setdefault(client.ENV_VAR, sys.executable)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "m.gmm"
        new_model(model, BANDS, mean=[0.25] * 5 + [2600.0], std=[0.2] * 5 + [400.0], encoder=args.encoder)
        chips = []
        profile = dict(driver="GTiff", width=args.chip, height=args.chip, count=6, dtype="float32",
                       crs="EPSG:32632", tiled=True, blockxsize=256, blockysize=256, compress="deflate",
                       nodata=float("nan"))
        for i in range(args.chips):  # acquisition-like chips: float reflectance + DEM
            t = rasterio.transform.from_origin(600000 + 5000 * i, 5200000, 10, 10)
            data = np.concatenate([rng.uniform(0.02, 0.9, (5, args.chip, args.chip)),
                                   rng.uniform(2000, 3500, (1, args.chip, args.chip))]).astype(np.float32)
            path = tmp / f"chip{i:03d}.tif"
            with rasterio.open(path, "w", transform=t, **profile) as dst:
                dst.write(data)
                dst.descriptions = tuple(BANDS)
            chips.append(path)
        opts = dict(TILE_SIZE=256, OVERLAP=64, BATCH_SIZE=args.batch, PRECISION=args.precision, DEVICE=args.device)
        core_opts = SegmentOptions(tile_size=256, overlap=64, batch_size=args.batch, precision=args.precision,
                                   device=args.device)

        class Quiet:
            def progress(self, f): pass
            def info(self, m): pass
            def warning(self, m): pass
            def debug(self, m): pass
            def cancelled(self): return False

        def in_process(part):
            for c in part:
                segment(c, model, tmp / f"{c.stem}_p.tif", tmp / f"{c.stem}_m.tif", options=core_opts)

        def through_engine(part):
            for c in part:
                client.run_step("segment_glaciers", dict(opts, INPUT=str(c), MODEL=str(model),
                                                         OUTPUT_PROBABILITY=str(tmp / f"{c.stem}_ep.tif"),
                                                         OUTPUT_MASK=str(tmp / f"{c.stem}_em.tif")), Quiet())
        in_process(chips[:2])  # warm both (model load, first engine start counted below)
        half = len(chips) // 2
        times = {"in-process": 0.0, "engine": 0.0}
        t0 = time.perf_counter()
        through_engine(chips[:1])
        start_cost = time.perf_counter() - t0
        times["engine"] += start_cost
        for name, fn, part in (("in-process", in_process, chips[:half]), ("engine", through_engine, chips[1:half]),
                               ("engine", through_engine, chips[half:]), ("in-process", in_process, chips[half:])):
            t0 = time.perf_counter()
            fn(part)
            times[name] += time.perf_counter() - t0
        client.POOL.close()
    n = len(chips)
    print(f"{n} chips of {args.chip} x {args.chip} x 6 ({args.encoder}, tile 256, {args.device})")
    print(f"in-process core.segmentation.segment loop: {times['in-process']:.1f} s ({n / times['in-process']:.2f} chips/s)")
    print(f"through the engine (QGIS's client, one engine): {times['engine']:.1f} s "
          f"({n / times['engine']:.2f} chips/s), first job incl. engine start {start_cost:.1f} s")
    print(f"engine / in-process: {times['engine'] / times['in-process']:.3f} (goal <= 1.2)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--encoder", default="resnet34")
    p.add_argument("--precision", default="auto")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--rounds", type=int, default=3, help="alternating raw/pipeline rounds (best of)")
    p.add_argument("--streams", type=int, default=0, help="CPU inference streams (0: automatic)")
    p.add_argument("--probability", default="float32", choices=["float32", "uint8"])
    p.add_argument("--no-onnx", action="store_true")
    p.add_argument("--backends", action="store_true", help="torch, onnxruntime and OpenVINO at equal precision")
    p.add_argument("--tta", nargs="*", default=["flips"], help="with --backends: TTA modes to time")
    p.add_argument("--int8-only", action="store_true", help="with --backends: the int8 rows and their fp32 reference only")
    p.add_argument("--members", type=int, default=0,
                   help="ensemble of this many members: M calls per batch against one stacked graph")
    p.add_argument("--memory", action="store_true")
    p.add_argument("--chips", type=int, default=0, help="batch of this many chips through the engine")
    p.add_argument("--chip", type=int, default=384, help="chip side (px) for --chips")
    a = p.parse_args()
    (run_members if a.members else run_chips if a.chips else run_memory if a.memory
     else run_backends if a.backends else run_speed)(a)
    print("benchmark process peak RSS MB:", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
