"""The whole chain in the QGIS desktop, as a new user walks it, with a screenshot per step:

  1 synthetic_region      -> 1_region.png        the region's group: inventory, hillshade, two scenes
  2 train_model           -> 2_trained.png       the log's end (no layer: a model file)
  3 cross_validate        -> 3_folds.png         inventory by fold, the out-of-fold probability
  4 segment_glaciers      -> 4_segmented.png     polygons over mask over probability over the scene
  5 evaluate_segmentation -> 5_evaluated.png     glaciers by recall
  6 area_change           -> 6_area_change.png   glaciers by rate, filtered ones hatched

`qgis --nologo --code` runs the walk in the real desktop (Xvfb with Mesa's GL driver unless
DISPLAY is given) through processing.runAndLoadResults, as the toolbox dialog does; the
walk's report.json holds each step's outputs and the layer tree after it (groups, layer
order, opacity, renderer), which tests/desktop asserts on. docs/desktop_walk.md says what
each screenshot shows.

Run: .qgis-venv/bin/python scripts/desktop_walk.py [OUTPUT_FOLDER]   (default desktop_walk/)
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

QGIS = shutil.which("qgis")

WALK = r'''
import json, os, sys, time, traceback
from qgis.core import QgsApplication, QgsLayerTreeGroup, QgsLayerTreeLayer, QgsProject
from qgis.utils import iface
from qgis.PyQt.QtCore import QTimer
OUT = {out!r}
report = {{"alive": True, "steps": {{}}}}


def settle(seconds=1.5):
    end = time.time() + seconds
    while time.time() < end:
        QgsApplication.processEvents()
        time.sleep(0.05)
    iface.mapCanvas().waitWhileRendering()


def tree(node=None):
    """The layer tree: groups as {{"group": name, "children": [...]}}, layers with their state."""
    node = node or QgsProject.instance().layerTreeRoot()
    out = []
    for child in node.children():
        if isinstance(child, QgsLayerTreeGroup):
            out.append({{"group": child.name(), "children": tree(child)}})
        elif isinstance(child, QgsLayerTreeLayer) and child.layer() is not None:
            layer = child.layer()
            renderer = layer.renderer() if hasattr(layer, "renderer") else None
            out.append({{"layer": layer.name(), "visible": child.isVisible(), "opacity": layer.opacity(),
                        "renderer": renderer.type() if renderer is not None else None,
                        "source": layer.source()}})
    return out


def shot(step, name, outputs):
    iface.mapCanvas().zoomToFullExtent()
    iface.mapCanvas().refreshAllLayers()
    settle()
    iface.mainWindow().grab().save(os.path.join(OUT, name))
    report["steps"][step] = {{"outputs": {{k: (v if isinstance(v, (int, float, list)) else str(v))
                                          for k, v in outputs.items()}},
                             "tree": tree(), "screenshot": name}}


try:
    import processing
    report["provider"] = QgsApplication.processingRegistry().providerById("glacier_mapper") is not None
    iface.mainWindow().resize(1600, 1000)  # the whole virtual screen (Xvfb has no window manager)
    from qgis.PyQt.QtWidgets import QDockWidget
    for dock in iface.mainWindow().findChildren(QDockWidget):
        if dock.objectName() == "Browser":
            dock.hide()  # the layers panel gets the height: the screenshots are about the layer tree
    region = processing.runAndLoadResults("glacier_mapper:synthetic_region", {{
        "OUTPUT_FOLDER": os.path.join(OUT, "region"), "SEED": 5, "SIZE_KM": 2, "N_GLACIERS": 3}})
    shot("synthetic_region", "1_region.png", region)
    inventory = region["INVENTORY"]
    training = {{"INVENTORY": inventory, "ID_FIELD": "id", "DEM": region["DEM"], "PATCH_SIZE": 64,
                "ENCODER": "resnet18", "EPOCHS": 1, "BATCH_SIZE": 4, "DEVICE": "cpu", "SEED": 1}}
    model = processing.run("glacier_mapper:train_model", dict(
        training, EPOCHS=8, INPUT=[region["IMAGERY_START"]], OUTPUT_MODEL=os.path.join(OUT, "model.gmm")))
    shot("train_model", "2_trained.png", model)
    folds = processing.runAndLoadResults("glacier_mapper:cross_validate", dict(
        training, INPUT=[region["IMAGERY_START"]], FOLDS=3, OUTPUT_FOLDER=os.path.join(OUT, "folds"),
        OUTPUT_TABLE="TEMPORARY_OUTPUT", OUTPUT_INVENTORY="TEMPORARY_OUTPUT"))
    shot("cross_validate", "3_folds.png", folds)
    seg = {{}}
    for date in ("START", "END"):
        seg[date] = processing.runAndLoadResults("glacier_mapper:segment_glaciers", {{
            "INPUT": region["IMAGERY_" + date], "DEM": region["DEM"], "MODEL": model["OUTPUT_MODEL"],
            "TILE_SIZE": 128, "OVERLAP": 32, "DEVICE": "cpu",
            "OUTPUT_PROBABILITY": os.path.join(OUT, date.lower() + "_probability.tif"),
            "OUTPUT_MASK": os.path.join(OUT, date.lower() + "_mask.tif"),
            "OUTPUT_POLYGONS": os.path.join(OUT, date.lower() + "_glaciers.gpkg")}})
    shot("segment_glaciers", "4_segmented.png", seg["END"])
    evaluation = processing.runAndLoadResults("glacier_mapper:evaluate_segmentation", {{
        "PREDICTION": seg["END"]["OUTPUT_PROBABILITY"], "INVENTORY": inventory, "ID_FIELD": "id",
        "OUTPUT_TABLE": "TEMPORARY_OUTPUT", "OUTPUT": "TEMPORARY_OUTPUT"}})
    shot("evaluate_segmentation", "5_evaluated.png", evaluation)
    loaded = QgsProject.instance().mapLayersByName("Inventory")[0]  # picked in the dialog's layer list
    change = processing.runAndLoadResults("glacier_mapper:area_change", {{
        "INVENTORY": loaded, "ID_FIELD": "id", "START": [seg["START"]["OUTPUT_PROBABILITY"]],
        "END": [seg["END"]["OUTPUT_PROBABILITY"]], "OUTPUT": "TEMPORARY_OUTPUT",
        "OUTPUT_SUMMARY": "TEMPORARY_OUTPUT", "OUTPUT_SIZE_CLASSES": "TEMPORARY_OUTPUT",
        "OUTPUT_REPORT": os.path.join(OUT, "area_change.html")}})
    shot("area_change", "6_area_change.png", change)
    # The scene alone, rendered as the user sees it: not black.
    from qgis.core import QgsMapRendererParallelJob, QgsMapSettings
    scene = [l for l in QgsProject.instance().mapLayers().values() if l.name().startswith("Sentinel-2")][0]
    settings = QgsMapSettings()
    settings.setLayers([scene])
    settings.setDestinationCrs(scene.crs())
    settings.setExtent(scene.extent())
    settings.setOutputSize(iface.mapCanvas().size())
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    image.save(os.path.join(OUT, "scene.png"))
    grey = [image.pixelColor(x, y).value() for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)]
    report["scene_mean_value"] = sum(grey) / len(grey)
    probability = [l for l in QgsProject.instance().mapLayers().values() if l.name().startswith("Glacier probability")][0]
    report["probability_legend"] = [item[0] for item in probability.legendSymbologyItems()]
except Exception:
    report["error"] = traceback.format_exc()
report["engine_packages_in_qgis"] = sorted(m for m in ("torch", "torchvision", "segmentation_models_pytorch",
    "xgboost", "pystac_client", "dask", "pyogrio", "triton") if m in sys.modules)
with open("/proc/self/maps") as f:
    maps = f.read()
report["gl_driver_loaded"] = any(n in maps for n in ("swrast_dri", "libGLX_mesa", "libgallium", "kms_swrast"))
report["llvm_loaded"] = "libLLVM" in maps


def finish():
    iface.mainWindow().grab().save(os.path.join(OUT, "desktop.png"))
    with open(os.path.join(OUT, "report.json"), "w") as f:
        json.dump(report, f)
    QgsProject.instance().setDirty(False)
    QgsApplication.exit(0)


QTimer.singleShot(1000, finish)
'''


def free_display() -> int:
    for n in range(90, 140):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise RuntimeError("no free X display")


class Xvfb:
    """A virtual X display with GLX (Mesa renders in software: a real GL context)."""

    def __enter__(self):
        if not shutil.which("Xvfb"):
            raise RuntimeError("Xvfb not found: run `make setup`")
        n = free_display()
        self.proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1600x1000x24", "+extension", "GLX",
                                      "-nolisten", "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(50):
            if Path(f"/tmp/.X11-unix/X{n}").exists():
                break
            time.sleep(0.1)
        self.display = f":{n}"
        return self.display

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def walk(out: Path, display: str, timeout: float = 1200) -> tuple[dict, subprocess.CompletedProcess]:
    """Run the walk in `qgis --code` on `display`; (report.json's content, the QGIS process)."""
    if QGIS is None:
        raise RuntimeError("qgis not found: run `make setup`")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    script = out / "walk.py"
    script.write_text(WALK.format(out=str(out)))
    env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb", LIBGL_ALWAYS_SOFTWARE="1")
    env.pop("QGIS_CUSTOM_CONFIG_PATH", None)  # the user's profile, where the plugin is installed
    env.pop("GLACIER_MAPPER_ENGINE", None)     # ... and its record of the engine
    proc = subprocess.run([QGIS, "--nologo", "--noversioncheck", "--code", str(script)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    report_path = out / "report.json"
    if not report_path.exists():
        raise RuntimeError(f"QGIS died (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(report_path.read_text()), proc


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "desktop_walk"
    if os.environ.get("DISPLAY"):
        report, _ = walk(out, os.environ["DISPLAY"])
    else:
        with Xvfb() as display:
            report, _ = walk(out, display)
    if "error" in report:
        print(report["error"], file=sys.stderr)
        return 1
    for step, seen in report["steps"].items():
        print(f"{step}: {out / seen['screenshot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
