"""Memory that must not grow with the region: peak RSS of the stages that once read a whole
raster, on a scene and on the same glaciers inside a raster the size of a Sentinel-2 tile (no
data around them), each stage in a process of its own. Stages: cutting training patches
(train_model), counting area change (area_change), polygonising a mask (segment_glaciers'
OUTPUT_POLYGONS). GDAL's block cache is held at 64 MB in every run (GDAL_CACHEMAX; its default,
5 % of the RAM, is bounded but would hide what the code itself holds). Printed per stage: peak RSS on both rasters and their ratio (large / small):
memory that does not grow with the region stays near 1.

    .venv/bin/python scripts/bench_memory.py                  # 10980 x 10980 px (a tile at 10 m)
    .venv/bin/python scripts/bench_memory.py --code /tmp/old  # another commit's code (git worktree)

Results and command go to docs/benchmarks.md ("Memory and the size of the raster").
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
STAGES = ("patches", "area_change", "polygons")


def embed(small: Path, big: Path, size: int, dtype=None) -> Path:
    """`small` at the top-left corner of a size x size raster of no data, written in blocks
    (the large raster is never in memory here either)."""
    import rasterio
    from rasterio.windows import Window
    with rasterio.open(small) as src:
        data, tags, descriptions = src.read(), src.tags(), src.descriptions
        profile = dict(src.profile, width=size, height=size, tiled=True, blockxsize=512, blockysize=512,
                       compress="deflate", driver="GTiff")
    if dtype:
        profile["dtype"] = dtype
    with rasterio.open(big, "w", **profile) as dst:
        dst.update_tags(**tags)
        for i, d in enumerate(descriptions, start=1):
            if d:
                dst.set_band_description(i, d)
        dst.write(data.astype(profile["dtype"]), window=Window(0, 0, data.shape[2], data.shape[1]))
    return big


def peak_rss_mb() -> float:
    """VmHWM: this process's peak RSS since its exec (ru_maxrss would carry the parent's).
    Linux's /proc: the benchmark runs where the project's CI and clusters run."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))


def run_stage(name: str, raster: str, inventory: str, work: str, code: str) -> dict:
    """One stage in this process (called in a child): its seconds and peak RSS."""
    if code:
        sys.path.insert(0, code)
    from glacier_mapper_plugin.core.labels import Inventory
    from glacier_mapper_plugin.core.vector import read_layer
    inv = Inventory.from_layer(read_layer(inventory, "inventory"))
    t0 = time.perf_counter()
    if name == "patches":
        from glacier_mapper_plugin.core.segmentation.patches import extract_patches
        n = len(extract_patches([raster], inv, ["B2", "B3", "B4", "B8"], 128, cache_root=Path(work) / "cache"))
    elif name == "area_change":
        from glacier_mapper_plugin.core.change.area_change import InventoryIndex, count_pixels
        n = int(count_pixels(raster, InventoryIndex(inv), threshold=0.5).predicted.sum())
    else:
        from glacier_mapper_plugin.core.segmentation.segment import polygonise
        n = len(read_layer(polygonise(raster, Path(work) / "polygons.gpkg")).geometries)
    return {"seconds": time.perf_counter() - t0, "result": n,
            "peak_mb": peak_rss_mb()}


def child(name, raster, inventory, work, code) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", name, str(raster), str(inventory), str(work),
                          str(code or "")], capture_output=True, text=True, cwd=work, check=True,
                         env=dict(os.environ, GDAL_CACHEMAX="64"))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=10980, help="width and height of the large raster, px")
    ap.add_argument("--code", type=Path, default=None, help="a checkout of another commit to measure")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(run_stage(*args.child)))
        return 0
    from glacier_mapper_plugin.core.imagery.synthetic import make_region
    with tempfile.TemporaryDirectory(prefix="bench_memory-") as tmp:
        work = Path(tmp)
        region = make_region(work / "region", seed=3, size_km=6.0, n_glaciers=12, clouds=False)
        import rasterio
        with rasterio.open(region.truth_end) as src:
            truth, profile = src.read(1), src.profile
        small = {"patches": region.imagery_end, "area_change": work / "prob.tif", "polygons": work / "mask.tif"}
        with rasterio.open(small["area_change"], "w", **dict(profile, dtype="float32", nodata=None)) as dst:
            dst.write(np.where(truth == 1, 0.9, 0.1).astype(np.float32), 1)
            dst.update_tags(DATE=str(region.end_date))
        with rasterio.open(small["polygons"], "w", **dict(profile, dtype="uint8", nodata=255)) as dst:
            dst.write((truth == 1).astype(np.uint8), 1)
        side = profile["width"]
        print(f"scene {side} x {profile['height']} px with {region.n_glaciers} glaciers, embedded in "
              f"{args.size} x {args.size} px ({(args.size / side) ** 2:.0f} x the pixels); code: "
              f"{args.code or ROOT}", flush=True)
        print("\n| stage | scene: peak RSS MB | s | large raster: peak RSS MB | s | ratio of peaks | same result |")
        print("|---|---|---|---|---|---|---|")
        for name in STAGES:
            big = embed(small[name], work / f"big_{name}.tif", args.size)
            runs = []
            for raster in (small[name], big):
                folder = work / f"{name}_{raster.stem}"
                folder.mkdir()
                runs.append(child(name, raster, region.inventory, folder, args.code))
            a, b = runs
            print(f"| {name} | {a['peak_mb']:.0f} | {a['seconds']:.1f} | {b['peak_mb']:.0f} | {b['seconds']:.1f} | "
                  f"{b['peak_mb'] / a['peak_mb']:.2f} | {a['result'] == b['result']} ({a['result']}) |", flush=True)
            big.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
