"""Acquisition benchmark against local servers: bytes read per glacier versus the full
Sentinel-2 tiles, and the speed-up from MAX_WORKERS when each HTTP request has latency.

    .venv/bin/python scripts/bench_acquire.py [--tile-px 10980] [--latency 0.03]

The archive is one full-size 10980 x 10980 tile per band (B12 and SCL at 20 m) built by
mirroring a synthetic region, served by a range-capable HTTP server on 127.0.0.1, with the
items in `rustac serve`. The glaciers are the region's inventory (top-left of the tile).
"""
import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import rasterio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from glacier_mapper_plugin.core.imagery.acquire import AcquireOptions, acquire  # noqa: E402
from glacier_mapper_plugin.core.geodesy import ellipsoidal_area_km2  # noqa: E402
from glacier_mapper_plugin.core.labels import Inventory  # noqa: E402
from glacier_mapper_plugin.core.imagery.synthetic import make_region  # noqa: E402
from glacier_mapper_plugin.core.vector import read_layer  # noqa: E402
from scripts.bench_segment import write_mirrored  # noqa: E402
from tests.s2_archive import build_archive  # noqa: E402
from tests.servers import RangeServer, StacApi  # noqa: E402


def big_scene(region, path, size):
    """A size x size 6-band L2A-like scene: the region's end scene mirrored across the tile."""
    with rasterio.open(region.imagery_end) as src:
        return write_mirrored(src.read(), path, size,
                              dict(dtype="uint16", nodata=0, crs=src.crs, transform=src.transform),
                              src.descriptions, src.tags())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tile-px", type=int, default=10980)
    p.add_argument("--latency", type=float, default=0.03, help="seconds added to each HTTP request")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        region = make_region(tmp / "region", seed=42, size_km=6.0, n_glaciers=16)
        scene = big_scene(region, tmp / "big.tif", a.tile_px)
        target = dt.date(2023, 9, 1)
        with RangeServer(tmp) as files:
            t0 = time.time()
            items, _ = build_archive(region, tmp, files.url, [("full", target, 10.0, [])],
                                     tiles="single", imagery=scene)
            print(f"archive: one {a.tile_px} x {a.tile_px} tile per band, built in {time.time() - t0:.0f} s")
            tile_bytes = sum(f.stat().st_size for f in (tmp / "data").glob("full_*.tif"))
            api = StacApi([items])
            inv = Inventory.from_layer(read_layer(region.inventory, "inventory"))
            glaciers = [(i, g, inv.crs) for i, g in zip(inv.ids, inv.geometries)]
            try:
                files.reset(delay=a.latency)
                res = acquire(glaciers[:1], AcquireOptions(date=target, stac_url=api.url, dem=None,
                                                           max_workers=1), tmp / "one")
                one = files.httpd.bytes_sent
                area = ellipsoidal_area_km2(inv.geometries[0], inv.crs)
                print(f"one glacier ({area:.2f} km2, 1280 m buffer): {one / 1e6:.2f} MB read of "
                      f"{tile_bytes / 1e6:.1f} MB of tiles = {100 * one / tile_bytes:.2f} % "
                      f"({res[0].status})")
                times = {}
                for w in a.workers:
                    files.reset(delay=a.latency)
                    t0 = time.time()
                    res = acquire(glaciers, AcquireOptions(date=target, stac_url=api.url, dem=None,
                                                           max_workers=w), tmp / f"w{w}")
                    times[w] = time.time() - t0
                    per = files.httpd.bytes_sent / len(glaciers)
                    print(f"MAX_WORKERS={w}: {len(glaciers)} glaciers in {times[w]:.1f} s, "
                          f"{files.httpd.requests} requests, {per / 1e6:.2f} MB per glacier "
                          f"({100 * per / tile_bytes:.2f} % of the tiles); statuses "
                          f"{sorted({r.status for r in res})}")
                base = times[a.workers[0]]
                for w in a.workers[1:]:
                    print(f"speed-up MAX_WORKERS={w} vs {a.workers[0]}: {base / times[w]:.2f} x")
            finally:
                api.close()


if __name__ == "__main__":
    main()
