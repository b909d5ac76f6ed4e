"""Scale benchmark: the whole chain on synthetic regions of growing size, each stage run as a
user on a cluster node would, through the `glacier-mapper` command (one process per stage),
with per stage: wall time, time per glacier and the peak RSS of the process doing the work
(VmHWM of it and of its DataLoader workers, the largest).

    .venv/bin/python scripts/bench_scale.py [--glaciers 50 200 800] [--patch 128 --encoder resnet18 --folds 2]

Regions keep the density of the issue's measurements (50 glaciers in 10 km x 10 km). Stages:
synthetic region; acquisition of per-glacier chips for two dates from a local STAC API over
HTTP range reads; train_model (1 epoch) and cross_validate (FOLDS folds, 1 epoch, out-of-fold
predictions) on the first date's chips; segmentation of both whole scenes; evaluation of the
second against its outlines; area change between them; mass balance for every glacier with
the real ERA5-Land files of the Oetztal (shared/data) and a Mass Balance Machine trained on
Hintereisferner's WGMS record (setup, not timed). The goal: time per glacier within 1.5x from
the smallest to the largest region for every stage, and train/cross-validate peak RSS < 3 GB.
"""
import argparse
import datetime as dt
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
GM = [sys.executable, "-m", "glacier_mapper_plugin.engine.cli"]
SHARED = ROOT.parent / "shared" / "data"
ERA5 = SHARED / "oggm_era5land_oetztal"
CLIMATE = [ERA5 / "sel_era5_land_monthly_t2m_1981-2018.nc", ERA5 / "sel_era5_land_monthly_prcp_1981-2018.nc",
           ERA5 / "sel_era5_land_invariant.nc"]


def _hwm_mb(pid) -> float:
    """Peak RSS (VmHWM) of a process and its descendants (DataLoader workers), in MB.
    Not ru_maxrss: that carries the RSS of this benchmark process across exec."""
    peak = 0.0
    try:
        with open(f"/proc/{pid}/status") as f:
            peak = next((int(ln.split()[1]) / 1024 for ln in f if ln.startswith("VmHWM:")), 0.0)
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                peak = max([peak] + [_hwm_mb(int(c)) for c in f.read().split()])
    except (OSError, ValueError):
        pass  # ended meanwhile
    return peak


def stage(log, argv):
    """Run one `glacier-mapper` step; (result, wall s, peak RSS in MB of it or its workers,
    sampled every 0.2 s)."""
    out, err = log.with_suffix(".json"), log.with_suffix(".log")
    with open(out, "w") as o, open(err, "w") as e:
        t0 = time.perf_counter()
        proc = subprocess.Popen([*GM, *[str(a) for a in argv], "--json"], stdout=o, stderr=e,
                                cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, _hwm_mb(proc.pid))
            time.sleep(0.2)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, argv[:1]))} failed ({proc.returncode}):\n{err.read_text()[-3000:]}")
    return json.loads(out.read_text()), wall, peak


def mass_balance_model(path):
    """The MBM of scripts/bench_mass_balance.py (HEF's WGMS record, ERA5-Land), saved once."""
    from scripts.bench_mass_balance import DATA, hef_observations
    from glacier_mapper_plugin.core.massbalance.climate import read_climate
    from glacier_mapper_plugin.core.massbalance.model import (FEATURES, MBMHeader, MBMOptions, design,
                                                         fit, save_mbm)
    from glacier_mapper_plugin.core.massbalance.topography import Topography
    obs, geom, crs = hef_observations()
    climate = read_climate(CLIMATE)
    obs = [o for o in obs if all(climate.has(*ym) for ym in o.months())]
    topo = Topography(DATA / "hef_srtm.tif")
    sites, _ = topo.cells(geom, crs, max_sites=80, seed=0)
    options = MBMOptions(n_estimators=100)
    model = fit(design(obs, climate, options, topo, {"HEF": sites}), options)
    save_mbm(path, model, MBMHeader(options=dict(options.__dict__), features=list(FEATURES),
                                    extra_variables=[]))
    return path


def run_region(n, args, work: Path, mbm):
    from tests.s2_archive import build_archive
    from tests.servers import RangeServer, StacApi
    size_km = round(10 * math.sqrt(n / 50), 2)
    folder = work / f"region_{n}"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []

    def timed(name, argv, count):
        result, wall, rss = stage(folder / name, argv)
        rows.append((name, wall, count, rss))
        print(f"  {name:18} {wall:8.1f} s {1000 * wall / count:9.1f} ms/glacier {rss:8.0f} MB", flush=True)
        return result

    region = timed("synthetic_region", ["synthetic-region", "--output-folder", folder / "region",
                                        "--seed", args.seed, "--size-km", size_km, "--n-glaciers", n], n)
    n = region["GLACIER_COUNT"]
    inventory = region["INVENTORY"]
    outlines_end = inventory.replace("layername=inventory", "layername=outlines_2023")
    d0, d1 = dt.date(2015, 8, 28), dt.date(2023, 9, 2)

    class Scenes:  # what build_archive reads from a region
        imagery_end, truth_start, dem = region["IMAGERY_END"], region["TRUTH_START"], region["DEM"]

    archive = folder / "archive"
    chips = {}
    with RangeServer(archive) as files:
        items, _ = build_archive(Scenes, archive, files.url, [("s2015", d0, 5.0, []), ("s2023", d1, 5.0, [])],
                                 imagery=[region["IMAGERY_START"], region["IMAGERY_END"]],
                                 convention="earth-search-c1")
        api = StacApi([items])
        try:
            for year, date in ((2015, d0), (2023, d1)):
                res = timed(f"acquire_{year}", [
                    "acquire", "--inventory", inventory, "--id-field", "id", "--date", date.isoformat(),
                    "--window-days", 10, "--max-candidates", 3, "--stac-url", api.url,
                    "--buffer-m", 640, "--dem", "stac:cop-dem-glo-30", "--max-workers", 4,
                    "--output-folder", folder / f"chips_{year}", "--output", folder / f"acq_{year}.gpkg"], n)
                chips[year] = sorted(res["FILES"])
        finally:
            api.close()
    training = ["--inventory", inventory, "--id-field", "id", "--patch-size", args.patch,
                "--encoder", args.encoder, "--epochs", 1, "--batch-size", args.batch,
                "--device", args.device, "--patch-cache", folder / "patches"]
    for chip in chips[2015]:
        training += ["--input", chip]
    timed("train_model", ["train", *training, "--output-model", folder / "model.gmm"], n)
    timed("cross_validate", ["crossval", *training, "--folds", args.folds,
                             "--output-folder", folder / "crossval"], n)
    probs = {}
    for year, scene in ((2015, region["IMAGERY_START"]), (2023, region["IMAGERY_END"])):
        res = timed(f"segment_{year}", [
            "segment", "--input", scene, "--dem", region["DEM"], "--model", folder / "model.gmm",
            "--device", args.device, "--mask-layer", inventory, "--mask-buffer", 500,
            "--output-probability", folder / f"prob_{year}.tif"], n)
        probs[year] = res["OUTPUT_PROBABILITY"]
    timed("evaluate", ["evaluate", "--prediction", probs[2023], "--inventory", outlines_end,
                       "--id-field", "id", "--quality", region["IMAGERY_END"],
                       "--output-table", folder / "evaluation.gpkg"], n)
    timed("area_change", ["area-change", "--inventory", inventory, "--id-field", "id",
                          "--date-field", "date", "--start", probs[2015], "--end", probs[2023],
                          "--start-quality", region["IMAGERY_START"], "--end-quality", region["IMAGERY_END"],
                          "--output", folder / "area_change.gpkg"], n)
    climate = []
    for f in CLIMATE:
        climate += ["--climate", f]
    timed("predict_mass_balance", ["predict-mb", "--inventory", inventory, "--id-field", "id",
                                   "--model", mbm, *climate, "--dem", region["DEM"],
                                   "--start-year", 2010, "--end-year", 2015,
                                   "--output-folder", folder / "mass_balance",
                                   "--output", folder / "mass_balance.gpkg"], n)
    return n, rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--glaciers", type=int, nargs="+", default=[50, 200, 800])
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--folds", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--work", help="folder for the regions (default: a temporary one)")
    args = p.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} is missing: the mass-balance stage needs the real ERA5-Land files")
    import platform
    print(f"machine: {platform.node()}, {os.cpu_count()} cores; patch {args.patch}, {args.encoder}, "
          f"batch {args.batch}, {args.folds} folds, device {args.device}", flush=True)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        mbm = mass_balance_model(work / "mbm.json")
        results = {}
        for n in args.glaciers:
            print(f"region of {n} glaciers ({10 * math.sqrt(n / 50):.1f} km):", flush=True)
            results[n] = run_region(n, args, work, mbm)
    sizes = list(results)
    print("\nstage                 " + "".join(f"{f'{results[n][0]} gl. ms/gl':>16}{'MB':>7}" for n in sizes)
          + f"{'ratio':>8}")
    for j, (name, *_) in enumerate(results[sizes[0]][1]):
        per = [1000 * results[n][1][j][1] / results[n][0] for n in sizes]
        rss = [results[n][1][j][3] for n in sizes]
        print(f"{name:22}" + "".join(f"{a:16.1f}{r:7.0f}" for a, r in zip(per, rss))
              + f"{per[-1] / per[0]:8.2f}")
    print("ratio: time per glacier of the largest region / of the smallest (goal <= 1.5)")


if __name__ == "__main__":
    main()
