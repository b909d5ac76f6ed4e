"""`make demo`: the Glacier Mapper pipeline end to end through qgis_process, as a user's
script would, on the embedded synthetic region:

  synthetic region -> a local Sentinel-2 archive served by a STAC API on 127.0.0.1 ->
  acquire_imagery (per-glacier chips, 2015 and 2023) -> train_model (2015 chips + inventory)
  -> segment_glaciers (every chip, and the whole 2023 scene) -> evaluate_segmentation ->
  area_change (+ report) -> truth check against the region's known retreat.

Writes demo_output/ and prints a summary (also in demo_output/summary.txt).
"""
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "demo_output"
QGIS_PROCESS = shutil.which("qgis_process.bin") or shutil.which("qgis_process")
sys.path.insert(0, str(ROOT))


def run(algorithm, note=None, quiet=False, **params):
    """One `qgis_process --json run` call; returns its results dictionary."""
    args = [QGIS_PROCESS, "--json", "run", f"glacier_mapper:{algorithm}", "--"]
    for k, v in params.items():
        for value in (v if isinstance(v, (list, tuple)) else [v]):
            args.append(f"{k}={value}")
    shown = " ".join(a for a in args[5:] if len(a) < 140)
    if not quiet:
        print(f"$ qgis_process.bin run glacier_mapper:{algorithm} -- {shown}", flush=True)
        if note:
            print(f"    ({note})", flush=True)
    t0 = time.time()
    proc = subprocess.run(args, capture_output=True, text=True,
                          env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    if proc.returncode != 0:
        sys.exit(f"{algorithm} failed:\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(proc.stdout)
    if not quiet:
        for line in result.get("log", {}).get("info", []):
            if not line.startswith("epoch") or line.endswith("(best)"):
                print("   ", line)
        print(f"    ({time.time() - t0:.1f} s)", flush=True)
    return result["results"]


def main():
    if QGIS_PROCESS is None:
        sys.exit("qgis_process not found: run `make setup`")
    from glacier_mapper_plugin.core.segmentation.model_file import read_header
    from glacier_mapper_plugin.core.vector import read_layer
    from tests.s2_archive import build_archive, decoding_error
    from tests.servers import RangeServer, StacApi

    OUT.mkdir(exist_ok=True)
    t_start = time.time()
    region = run("synthetic_region", OUTPUT_FOLDER=OUT / "region", SEED=42, SIZE_KM=6,
                 N_GLACIERS=16, START_YEAR=2015, END_YEAR=2023)
    inventory_layer = region["INVENTORY"]
    glacier_ids = [r["id"] for r in read_layer(inventory_layer.split("|")[0], "inventory").records]

    # A Sentinel-2 archive of the region, as a STAC API would serve it: per date two
    # candidate scenes; the least cloudy overall clouds some glaciers.
    archive = OUT / "archive"
    shutil.rmtree(archive, ignore_errors=True)
    d0, d1 = dt.date(2015, 8, 28), dt.date(2023, 9, 2)
    # Target dates 2015-08-30 and 2023-09-01: scene b is the closest and least cloudy overall,
    # but clouds four glaciers, which take scene a instead.
    scenes = [("s2015a", d0, 35.0, []), ("s2015b", d0 + dt.timedelta(days=2), 8.0, [2, 5, 9, 13]),
              ("s2023a", d1, 40.0, []), ("s2023b", d1 - dt.timedelta(days=1), 6.0, [1, 4, 11, 16])]
    imagery = [region["IMAGERY_START"]] * 2 + [region["IMAGERY_END"]] * 2

    class _Region:  # what build_archive reads from a region
        imagery_end, truth_start, dem = region["IMAGERY_END"], region["TRUTH_START"], region["DEM"]

    # 2015 as Earth Search's Collection 1 serves it (reprocessed: the +1000 offset is in the
    # DNs, declared in raster:bands); 2023 as its older sentinel-2-l2a serves it (offset removed
    # from the COGs, yet raster:bands declares -0.1), with scene s2023a's
    # earthsearch:boa_offset_applied flag false although its pixels are harmonised, as in
    # Element84/earth-search #66 and #71: the pixels must win.
    conventions = ["earth-search-c1"] * 2 + ["earth-search-v1"] * 2
    lies = [False, False, "flag false", False]
    with RangeServer(archive) as files:
        items, _ = build_archive(_Region, archive, files.url, scenes, imagery=imagery,
                                 convention=conventions, lie=lies)
        api = StacApi([items])
        print(f"local STAC API {api.url} serving {len(scenes)} scenes x 2 tiles + a DEM "
              f"(COGs over HTTP range requests from {files.url})", flush=True)
        try:
            acquired = {}
            for year, date in ((2015, "2015-08-30"), (2023, "2023-09-01")):
                acquired[year] = run("acquire_imagery", INVENTORY=inventory_layer,
                                     DATE=date, WINDOW_DAYS=15, MAX_CANDIDATES=5, STAC_URL=api.url,
                                     BUFFER_M=640,
                                     DEM="stac:cop-dem-glo-30", MAX_WORKERS=4,
                                     OUTPUT_FOLDER=OUT / f"chips_{year}",
                                     OUTPUT=OUT / f"acquisition_{year}.gpkg")
            bytes_read = files.httpd.bytes_sent
        finally:
            api.close()
    archive_bytes = sum(p.stat().st_size for p in (archive / "data").glob("*.tif"))

    # Train on the inventory-year chips (defaults scaled down for a laptop CPU); an
    # interrupted demo resumes training from its last epoch (model.gmm.resume).
    model = OUT / "model.gmm"
    chips0 = sorted(acquired[2015]["FILES"])
    chips1 = sorted(acquired[2023]["FILES"])
    run("train_model", note="about 3 minutes on a 2-core CPU", INPUT=chips0,
        INVENTORY=inventory_layer, PATCH_SIZE=128, ENCODER="resnet18", EPOCHS=30,
        BATCH_SIZE=8, LEARNING_RATE=0.002, DEVICE="auto", SEED=42, OUTPUT_MODEL=model)
    header = read_header(model)

    # Segment every chip of both dates (what the batch dialog does).
    print(f"$ qgis_process.bin run glacier_mapper:segment_glaciers -- INPUT=<chip> ... "
          f"({len(chips0) + len(chips1)} chips)", flush=True)
    t0 = time.time()
    probs = {2015: [], 2023: []}
    for year, chips in ((2015, chips0), (2023, chips1)):
        folder = OUT / f"segmented_{year}"
        folder.mkdir(exist_ok=True)
        for chip in chips:
            res = run("segment_glaciers", quiet=True, INPUT=chip, MODEL=model,
                      OUTPUT_PROBABILITY=folder / f"{Path(chip).stem}_probability.tif",
                      OUTPUT_MASK=folder / f"{Path(chip).stem}_mask.tif",
                      OUTPUT_POLYGONS=folder / f"{Path(chip).stem}_glaciers.gpkg")
            probs[year].append(res["OUTPUT_PROBABILITY"])
    print(f"    {len(chips0) + len(chips1)} chips on {res['DEVICE_USED']} ({res['PRECISION_USED']}), "
          f"{time.time() - t0:.1f} s", flush=True)

    # The whole 2023 scene at once, scored against the true 2023 outlines.
    scene = run("segment_glaciers", INPUT=region["IMAGERY_END"], DEM=region["DEM"], MODEL=model,
                MASK_LAYER=inventory_layer, MASK_BUFFER=500,
                OUTPUT_PROBABILITY=OUT / "scene_2023_probability.tif",
                OUTPUT_MASK=OUT / "scene_2023_mask.tif", OUTPUT_POLYGONS=OUT / "scene_2023_glaciers.gpkg")
    score = run("evaluate_segmentation", PREDICTION=scene["OUTPUT_PROBABILITY"],
                INVENTORY=inventory_layer.replace("layername=inventory", "layername=outlines_2023"),
                QUALITY=region["IMAGERY_END"],
                OUTPUT_TABLE=OUT / "scene_2023_evaluation.gpkg",
                OUTPUT=OUT / "scene_2023_evaluated_outlines.gpkg")

    change = run("area_change", INVENTORY=inventory_layer,
                 START=probs[2015], END=probs[2023], START_QUALITY=chips0, END_QUALITY=chips1,
                 OUTPUT=OUT / "area_change.gpkg", OUTPUT_SUMMARY=OUT / "area_change_summary.gpkg",
                 OUTPUT_SIZE_CLASSES=OUT / "area_change_size_classes.gpkg",
                 OUTPUT_REPORT=OUT / "area_change_report.html")

    inventory = read_layer(inventory_layer.split("|")[0], "inventory")
    measured = {r["id"]: r for r in read_layer(change["OUTPUT"], None).records}
    picks = {y: {r["glacier_id"]: r for r in read_layer(OUT / f"acquisition_{y}.gpkg", None).records}
             for y in (2015, 2023)}
    lines = ["Glacier Mapper demo: synthetic region (seed 42, 6 km, 16 glaciers)", "",
             f"{'id':5} {'area 2015':>9} {'scene 2015':>10} {'scene 2023':>10} {'true %/yr':>9} "
             f"{'measured':>8}  filter"]
    for rec in inventory.records:
        m = measured[rec["id"]]
        s0, s1 = (picks[y][rec["id"]]["scene_id"].split("_")[-1] for y in (2015, 2023))
        lines.append(f"{rec['id']:5} {rec['area_km2']:9.3f} {s0:>10} {s1:>10} "
                     f"{rec['true_rate_pct_yr']:9.2f} {m['rate_pct_yr']:8.2f}  "
                     f"{m['filter_reason'] or 'kept'}")
    decoding = {}
    for year, source in ((2015, region["IMAGERY_START"]), (2023, region["IMAGERY_END"])):
        errors = [decoding_error(f, source) for f in (acquired[year]["FILES"])]
        rows = picks[year].values()
        decoding[year] = (max(e[0] for e in errors), max(e[1] for e in errors),
                          sorted({r["collection"] for r in rows}),
                          sum(r["offset_decided_by"] == "pixels" for r in rows),
                          sum(r["offset_decided_by"] == "metadata+pixels" for r in rows))
    kept = [rec for rec in inventory.records if measured[rec["id"]]["kept"]]
    a0 = sum(r["area_km2"] for r in kept)
    true_kept = sum(r["true_rate_km2_yr"] for r in kept) / a0 * 100 if a0 else float("nan")
    lines += [
        "",
        f"acquisition: {acquired[2015]['N_OK']} + {acquired[2023]['N_OK']} of {len(glacier_ids)} "
        f"glaciers; {bytes_read / 2e6 / len(glacier_ids):.2f} MB read per glacier and date (SCL of "
        f"each candidate, then 5 bands; the demo's tiles are only {archive_bytes / 1e6:.1f} MB in "
        f"all: scripts/bench_acquire.py measures shares of full-size tiles)",
        *[f"reflectance {y}: {', '.join(c)}; offset decided by metadata and pixels together for {both} "
          f"chips, by the pixels against the metadata for {pix}; largest error vs the true "
          f"reflectance {err:.4f} (10 m bands), largest band bias {bias:.4f}"
          for y, (err, bias, c, pix, both) in decoding.items()],
        f"model: {model.name} ({header.encoder}, best epoch {header.metrics['best_epoch']}, "
        f"validation IoU per glacier {header.metrics['val_iou_per_glacier']:.3f})",
        f"whole 2023 scene vs true 2023 outlines: IoU {score['IOU']:.3f}, F1 {score['F1']:.3f}, "
        f"precision {score['PRECISION']:.3f}, recall {score['RECALL']:.3f} "
        f"({scene['DEVICE_USED']}, {scene['PRECISION_USED']})",
        f"area change: {change['N_KEPT']} of {len(inventory.records)} glaciers kept; regional rate "
        f"{change['REGIONAL_RATE']:.2f} %/yr",
        f"truth: {true_kept:.2f} %/yr for the same glaciers (error "
        f"{change['REGIONAL_RATE'] - true_kept:+.2f}), {region['TRUE_REGIONAL_RATE']:.2f} %/yr "
        f"for all glaciers (difference {change['REGIONAL_RATE'] - region['TRUE_REGIONAL_RATE']:+.2f})",
        f"report: {change['OUTPUT_REPORT']}",
        f"total {time.time() - t_start:.0f} s"]
    summary = "\n".join(lines)
    (OUT / "summary.txt").write_text(summary + "\n")
    print("\n" + summary + f"\n\nwritten to {OUT}")
    wrong = [y for y, (err, bias, *_) in decoding.items() if not (err <= 0.005 and bias <= 0.005)]
    if wrong:
        sys.exit(f"truth check failed: chips of {wrong} do not decode to the true reflectance")


if __name__ == "__main__":
    main()
