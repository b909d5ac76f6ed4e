"""Dask scale-out benchmark: throughput of acquisition and segmentation through a real Dask
scheduler with 1, 2 and 4 workers on this machine, as ratios to the same step run locally
(no scheduler) in the same run.

    .venv/bin/python scripts/bench_dask.py [--workers 1 2 4] [--latency 0.03] [--scene-px 4096]

Acquisition: 32 glaciers from a local STAC API (`rustac serve`) and a range-capable HTTP file
server, each request delayed by --latency s (the network), as bench_acquire does; local =
MAX_WORKERS threads here, Dask = one task per glacier on workers with MAX_WORKERS threads each.
Segmentation: one --scene-px square scene (bench_segment's: a synthetic region mirrored, DEM as a band), resnet18 U-Net,
tile 512; local = one process with all cores, Dask = blocks of tile rows on workers that
share the cores (OMP_NUM_THREADS = cores / workers). On a GPU machine add --device cuda (the
workers get a GPU resource). Every Dask result is checked against the local one (pixels equal).
"""
import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from glacier_mapper_plugin.core.imagery.acquire import AcquireOptions, acquire  # noqa: E402
from glacier_mapper_plugin.core.cluster import DaskPool  # noqa: E402
from glacier_mapper_plugin.core.labels import Inventory  # noqa: E402
from glacier_mapper_plugin.core.segmentation.model_file import new_model  # noqa: E402
from glacier_mapper_plugin.core.progress import Progress  # noqa: E402
from glacier_mapper_plugin.core.segmentation.segment import SegmentOptions, segment, segment_blocks  # noqa: E402
from glacier_mapper_plugin.core.imagery.synthetic import make_region  # noqa: E402
from glacier_mapper_plugin.core.vector import read_layer  # noqa: E402
from scripts.bench_segment import make_big_raster  # noqa: E402
from tests.s2_archive import build_archive  # noqa: E402
from tests.servers import DaskCluster, RangeServer, StacApi  # noqa: E402


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def warm():
    """What a worker that has run a task before has already imported."""
    import pystac_client  # noqa: F401
    import segmentation_models_pytorch  # noqa: F401
    import torch  # noqa: F401


def same(a, b) -> bool:
    with rasterio.open(a) as x, rasterio.open(b) as y:
        return bool(np.array_equal(x.read(), y.read(), equal_nan=True))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--latency", type=float, default=0.03, help="seconds added to each HTTP request")
    p.add_argument("--max-workers", type=int, default=4, help="acquisition threads (here / per worker)")
    p.add_argument("--glaciers", type=int, default=32)
    p.add_argument("--scene-px", type=int, default=4096)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    n_cores = cores()
    print(f"machine: {os.uname().nodename}, {n_cores} cores; latency {a.latency} s, "
          f"{a.glaciers} glaciers, scene {a.scene_px} px, device {a.device}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        region = make_region(tmp / "region", seed=42, size_km=6.0, n_glaciers=a.glaciers)
        inv = Inventory.from_layer(read_layer(region.inventory, "inventory"))
        glaciers = [(i, g, inv.crs) for i, g in zip(inv.ids, inv.geometries)]
        scene = make_big_raster(tmp / "scene" / "scene.tif", a.scene_px)  # B2..B12 + DEM bands
        model = tmp / "model.gmm"
        new_model(model, ["B2", "B3", "B4", "B8", "B12", "DEM"], mean=[0.25] * 5 + [2600.0],
                  std=[0.2] * 5 + [400.0], encoder="resnet18", seed=1)
        seg_opts = SegmentOptions(tile_size=512, overlap=64, batch_size=4, device=a.device)
        target = dt.date(2023, 9, 1)
        with RangeServer(tmp) as files:
            items, _ = build_archive(region, tmp, files.url, [("full", target, 10.0, [])])
            api = StacApi([items])
            try:
                options = AcquireOptions(date=target, stac_url=api.url, dem=None, max_workers=a.max_workers)
                files.reset(delay=a.latency)
                local_acq, t_acq = timed(lambda: acquire(glaciers, options, tmp / "acq_local"))
                local_seg, t_seg = timed(lambda: segment(scene, model, tmp / "seg_local.tif", options=seg_opts))
                print(f"local: acquisition {t_acq:.1f} s ({len(glaciers) / t_acq:.2f} glaciers/s, "
                      f"{a.max_workers} threads), segmentation {t_seg:.1f} s "
                      f"({a.scene_px ** 2 / 1e6 / t_seg:.2f} Mpx/s)")
                print("| workers | acquisition s | ratio to local | segmentation s | ratio to local | same pixels |")
                print("|---|---|---|---|---|---|")
                for w in a.workers:
                    env = {"OMP_NUM_THREADS": str(max(1, n_cores // w))}
                    with DaskCluster(tmp / f"dask{w}", workers=0, env=env) as cluster:
                        cluster.workers = [cluster.add_worker(a.max_workers, "GPU=1" if a.device == "cuda" else None)
                                           for _ in range(w)]
                        cluster.wait_for(w)
                        with DaskPool(cluster.address) as pool:
                            pool.client.run(warm)  # long-lived workers have their imports done
                            files.reset(delay=a.latency)
                            acq, t_a = timed(lambda: acquire(glaciers, options, tmp / f"acq_dask{w}", pool=pool))
                            seg, t_s = timed(lambda: segment_blocks(scene, model, tmp / f"seg_dask{w}.tif", None, None,
                                                                    None, seg_opts, Progress(), pool))
                    ok = same(local_seg.probability, seg.probability) and all(
                        same(x.file, y.file) for x, y in zip(local_acq, acq) if x.file)
                    print(f"| {w} | {t_a:.1f} | {t_acq / t_a:.2f} | {t_s:.1f} | {t_seg / t_s:.2f} | {ok} |")
            finally:
                api.close()


if __name__ == "__main__":
    main()
