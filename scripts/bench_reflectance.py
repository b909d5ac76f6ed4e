"""Sentinel-2 reflectance per catalog convention: decoding error and the cost of the pixel check.

For each catalog layout (tests/s2_archive.py: Earth Search v1 and Collection 1, Planetary
Computer, both contradicting Earth Search flags) an archive of the synthetic region is served
by rustac + a range server on 127.0.0.1; every glacier is acquired and its chip compared with
the scene it was cut from, decoded with that scene's own baseline. Prints per convention the
largest pixel error over the 10 m bands, the largest band bias (B12 included), how the offset
was decided, and the pixel check's time per chip against the whole acquisition of that chip.

    .venv/bin/python scripts/bench_reflectance.py [--size-km 4] [--glaciers 8]
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASES = [("earth-search-v1", False, "start"), ("earth-search-v1", False, "end"),
         ("earth-search-v1", "flag false", "end"), ("earth-search-v1", "flag true", "end"),
         ("earth-search-c1", False, "start"), ("earth-search-c1", False, "end"),
         ("planetary-computer", False, "start"), ("planetary-computer", False, "end")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-km", type=float, default=4.0)
    ap.add_argument("--glaciers", type=int, default=8)
    ap.add_argument("--buffer", type=float, default=1280.0)
    args = ap.parse_args()
    from glacier_mapper_plugin.core.imagery import reflectance
    from glacier_mapper_plugin.core.imagery.acquire import AcquireOptions, acquire
    from glacier_mapper_plugin.core.labels import Inventory
    from glacier_mapper_plugin.core.imagery.synthetic import make_region
    from glacier_mapper_plugin.core.vector import read_layer
    from tests.s2_archive import build_archive, decoding_error
    from tests.servers import RangeServer, StacApi

    target = dt.date(2023, 9, 1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        region = make_region(tmp / "region", seed=42, size_km=args.size_km, n_glaciers=args.glaciers,
                             clouds=False)
        inv = Inventory.from_layer(read_layer(region.inventory, "inventory"))
        glaciers = [(i, g, inv.crs) for i, g in zip(inv.ids, inv.geometries)]
        print(f"region {args.size_km:g} km, {len(glaciers)} glaciers, buffer {args.buffer:g} m")
        print(f"{'layout':20} {'flag':10} {'year':5} {'max err 10m':>11} {'max |bias|':>10} "
              f"{'decided by':>26} {'s/chip':>7}")
        worst = 0.0
        with RangeServer(tmp) as files:
            for n, (conv, lie, year) in enumerate(CASES):
                folder = tmp / f"c{n}"
                imagery = region.imagery_start if year == "start" else region.imagery_end
                items, _ = build_archive(region, folder, f"{files.url}/{folder.name}",
                                         [("a", target, 10.0, [])], imagery=imagery,
                                         convention=conv, lie=lie)
                api = StacApi([items])
                try:
                    t0 = time.perf_counter()
                    res = acquire(glaciers, AcquireOptions(date=target, stac_url=api.url, dem=str(region.dem),
                                                           buffer_m=args.buffer, max_workers=1), tmp / f"out{n}")
                    per_chip = (time.perf_counter() - t0) / len(res)
                finally:
                    api.close()
                errors = [decoding_error(r.file, imagery) for r in res if r.file]
                err, bias = max(e[0] for e in errors), max(e[1] for e in errors)
                worst = max(worst, err, bias)
                how = ",".join(sorted({r.offset_decided_by for r in res}))
                print(f"{conv:20} {str(lie or '-'):10} {2015 if year == 'start' else 2023:5} "
                      f"{err:11.5f} {bias:10.5f} {how:>26} {per_chip:7.3f}", flush=True)
        # The pixel check alone, on windows the size of this run's chips and of a large glacier.
        import rasterio
        with rasterio.open(res[0].file) as src:
            shape = src.shape
        rng = np.random.default_rng(0)
        for h, w in (shape, (1000, 1000)):
            bands = [rng.integers(1, 6000, (h, w)).astype(np.float32) for _ in range(5)]
            clear = np.ones((h, w), bool)
            reflectance.decide(True, "bench", bands, clear)
            t0 = time.perf_counter()
            for _ in range(5):
                reflectance.decide(True, "bench", bands, clear)
            ms = (time.perf_counter() - t0) / 5 * 1000
            print(f"pixel check on a {h} x {w} chip (5 bands): {ms:.1f} ms"
                  + (f" = {ms / 1000 / per_chip * 100:.1f} % of acquiring such a chip ({per_chip:.2f} s)"
                     if (h, w) == shape else ""))
        print(f"largest decoding error over all layouts: {worst:.5f} (goal <= 0.005)")
        return 0 if worst <= 0.005 else 1


if __name__ == "__main__":
    sys.exit(main())
