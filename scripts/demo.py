"""`make demo`: the Glacier Mapper pipeline run end to end through qgis_process, as a user's
script would, on the embedded synthetic region. Writes demo_output/ and prints a summary."""
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


def run(algorithm, **params):
    """One `qgis_process --json run` call; returns its results dictionary."""
    args = [QGIS_PROCESS, "--json", "run", f"glacier_mapper:{algorithm}", "--"]
    args += [f"{k}={v}" for k, v in params.items()]
    print(f"$ qgis_process.bin run glacier_mapper:{algorithm} -- "
          + " ".join(f"{k}={v}" for k, v in params.items()), flush=True)
    t0 = time.time()
    proc = subprocess.run(args, capture_output=True, text=True,
                          env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    if proc.returncode != 0:
        sys.exit(f"{algorithm} failed:\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(proc.stdout)
    for line in result.get("log", {}).get("info", []):
        print("   ", line)
    print(f"    ({time.time() - t0:.1f} s)")
    return result["results"]


def main():
    if QGIS_PROCESS is None:
        sys.exit("qgis_process not found: run `make setup`")
    OUT.mkdir(exist_ok=True)
    region = run("synthetic_region", OUTPUT_FOLDER=OUT / "region", SEED=42, SIZE_KM=6,
                 N_GLACIERS=16, START_YEAR=2015, END_YEAR=2023)

    sys.path.insert(0, str(ROOT))
    from glacier_mapper_plugin import dependencies
    dependencies.add_to_sys_path()
    from glacier_mapper_plugin.core.model_file import read_header
    from glacier_mapper_plugin.core.vector import read_layer

    # Train a small model on the inventory-year scene (defaults scaled down for a laptop CPU).
    # An interrupted demo resumes training from its last epoch (model.gmm.resume).
    model = OUT / "model.gmm"
    run("train_model", INPUT=region["IMAGERY_START"], INVENTORY=region["INVENTORY"],
        ID_FIELD="id", DEM=region["DEM"], PATCH_SIZE=128, ENCODER="resnet18", EPOCHS=30,
        BATCH_SIZE=8, LEARNING_RATE=0.002, DEVICE="auto", SEED=42, OUTPUT_MODEL=model)
    header = read_header(model)

    # Segment both dates, then score each against its true outlines.
    segmented, scores = {}, {}
    truth_layers = {"IMAGERY_START": region["INVENTORY"],
                    "IMAGERY_END": region["INVENTORY"].replace("layername=inventory",
                                                               "layername=outlines_2023")}
    for key in ("IMAGERY_START", "IMAGERY_END"):
        stem = Path(region[key]).stem
        segmented[key] = run("segment_glaciers", INPUT=region[key], DEM=region["DEM"], MODEL=model,
                             MASK_LAYER=region["INVENTORY"], MASK_BUFFER=500,
                             OUTPUT_PROBABILITY=OUT / f"{stem}_probability.tif",
                             OUTPUT_MASK=OUT / f"{stem}_mask.tif",
                             OUTPUT_POLYGONS=OUT / f"{stem}_glaciers.gpkg")
        scores[key] = run("evaluate_segmentation", PREDICTION=segmented[key]["OUTPUT_PROBABILITY"],
                          INVENTORY=truth_layers[key], ID_FIELD="id", QUALITY=region[key],
                          OUTPUT_TABLE=OUT / f"{stem}_evaluation.gpkg",
                          OUTPUT=OUT / f"{stem}_evaluated_outlines.gpkg")

    # Area change between the dates with the paper's filters, and its report.
    change = run("area_change", INVENTORY=region["INVENTORY"], ID_FIELD="id", DATE_FIELD="date",
                 START=segmented["IMAGERY_START"]["OUTPUT_PROBABILITY"],
                 END=segmented["IMAGERY_END"]["OUTPUT_PROBABILITY"],
                 START_QUALITY=region["IMAGERY_START"], END_QUALITY=region["IMAGERY_END"],
                 OUTPUT=OUT / "area_change.gpkg", OUTPUT_SUMMARY=OUT / "area_change_summary.gpkg",
                 OUTPUT_SIZE_CLASSES=OUT / "area_change_size_classes.gpkg",
                 OUTPUT_REPORT=OUT / "area_change_report.html")
    measured = read_layer(change["OUTPUT"], None)

    inventory = read_layer(region["INVENTORY"].split("|")[0], "inventory")
    region_years = (inventory.records[0]["year"], int(Path(region["IMAGERY_END"]).stem[7:11]))
    lines = ["Glacier Mapper demo: synthetic region (seed 42, 6 km, 16 glaciers)", "",
             f"{'id':6} {'name':18} {'area 2015':>9} {'true %/yr':>9} {'measured %/yr':>13}  filter"]
    by_id = {r["id"]: r for r in measured.records}
    for rec in inventory.records:
        m = by_id[rec["id"]]
        lines.append(f"{rec['id']:6} {rec['name']:18} {rec['area_km2']:9.3f} "
                     f"{rec['true_rate_pct_yr']:9.2f} {m['rate_pct_yr']:13.2f}  "
                     f"{m['filter_reason'] or 'kept'}")
    kept = [rec for rec in inventory.records if by_id[rec["id"]]["kept"]]
    a0 = sum(r["area_km2"] for r in kept)
    true_kept = sum(r["true_rate_km2_yr"] for r in kept) / a0 * 100 if a0 else float("nan")
    lines += ["", f"glaciers: {region['GLACIER_COUNT']}, true regional rate "
                  f"{region['TRUE_REGIONAL_RATE']:.2f} %/yr",
              f"imagery: {region['IMAGERY_START']}", f"         {region['IMAGERY_END']}",
              f"inventory: {region['INVENTORY']}", "",
              f"model: {model} ({header.encoder}, best epoch {header.metrics['best_epoch']}, "
              f"validation IoU per glacier {header.metrics['val_iou_per_glacier']:.3f})", "",
              "segmentation scored against the true outlines (pixels not masked by SCL):"]
    for key, year in (("IMAGERY_START", region_years[0]), ("IMAGERY_END", region_years[1])):
        sc, seg = scores[key], segmented[key]
        lines.append(f"  {year}: IoU {sc['IOU']:.3f}  F1 {sc['F1']:.3f}  precision "
                     f"{sc['PRECISION']:.3f}  recall {sc['RECALL']:.3f}   "
                     f"({seg['DEVICE_USED']}, {seg['PRECISION_USED']})")
    lines += ["", f"area change: {change['N_KEPT']} of {len(inventory.records)} glaciers kept; "
                  f"regional rate {change['REGIONAL_RATE']:.2f} %/yr; true rate of the same "
                  f"glaciers {true_kept:.2f} %/yr (error {change['REGIONAL_RATE'] - true_kept:+.2f}); "
                  f"true rate of all glaciers {region['TRUE_REGIONAL_RATE']:.2f} %/yr",
              f"report: {change['OUTPUT_REPORT']}"]
    summary = "\n".join(lines)
    (OUT / "summary.txt").write_text(summary + "\n")
    print("\n" + summary + f"\n\nwritten to {OUT}")


if __name__ == "__main__":
    main()
