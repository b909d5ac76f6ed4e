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
    region = run("synthetic_region", OUTPUT_FOLDER=OUT / "region", SEED=42, SIZE_KM=4,
                 N_GLACIERS=8, START_YEAR=2015, END_YEAR=2023)

    sys.path.insert(0, str(ROOT))
    from glacier_mapper_plugin import dependencies
    dependencies.add_to_sys_path()
    from glacier_mapper_plugin.core.model_file import new_model
    from glacier_mapper_plugin.core.vector import read_layer

    # Segmentation plumbing on both dates. Until train_model lands (issue 4) the model is an
    # UNTRAINED network: this checks the pipeline (bands, offsets, tiling, outputs, device),
    # its outlines mean nothing yet.
    model = OUT / "untrained_resnet34.gmm"
    new_model(model, ["B2", "B3", "B4", "B8", "B12", "DEM"], mean=[0.25] * 5 + [2600.0],
              std=[0.2] * 5 + [400.0], encoder="resnet34", seed=0)
    segmented = {}
    for key in ("IMAGERY_START", "IMAGERY_END"):
        stem = Path(region[key]).stem
        segmented[key] = run("segment_glaciers", INPUT=region[key], DEM=region["DEM"], MODEL=model,
                             MASK_LAYER=region["INVENTORY"], MASK_BUFFER=500,
                             OUTPUT_PROBABILITY=OUT / f"{stem}_probability.tif",
                             OUTPUT_MASK=OUT / f"{stem}_mask.tif",
                             OUTPUT_POLYGONS=OUT / f"{stem}_glaciers.gpkg")
    inventory = read_layer(region["INVENTORY"].split("|")[0], "inventory")
    lines = ["Glacier Mapper demo: synthetic region (seed 42)", "",
             f"{'id':6} {'name':22} {'area 2015 km2':>14} {'true area 2023':>15} {'true %/yr':>10}"]
    for rec in inventory.records:
        lines.append(f"{rec['id']:6} {rec['name']:22} {rec['area_km2']:14.3f} "
                     f"{rec['true_area_end_km2']:15.3f} {rec['true_rate_pct_yr']:10.2f}")
    lines += ["", f"glaciers: {region['GLACIER_COUNT']}, true regional rate "
                  f"{region['TRUE_REGIONAL_RATE']:.2f} %/yr",
              f"imagery: {region['IMAGERY_START']}", f"         {region['IMAGERY_END']}",
              f"inventory: {region['INVENTORY']}", "",
              "segment_glaciers ran on both dates with an UNTRAINED model (pipeline check only; "
              "training arrives with train_model):"]
    for key, res in segmented.items():
        lines.append(f"  {Path(res['OUTPUT_PROBABILITY']).name}: device {res['DEVICE_USED']}, "
                     f"precision {res['PRECISION_USED']}")
    summary = "\n".join(lines)
    (OUT / "summary.txt").write_text(summary + "\n")
    print("\n" + summary + f"\n\nwritten to {OUT}")


if __name__ == "__main__":
    main()
