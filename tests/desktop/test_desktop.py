"""Tier 5: the QGIS desktop itself, under Xvfb with Mesa's GL driver (not offscreen: the
offscreen platform loads no GL driver and hides the crash this tier exists for: torch's
bundled LLVM colliding with the LLVM of Mesa's driver). `qgis --code` runs a script in the
desktop that calls processing.run as the toolbox dialog does (synthetic_region, train_model,
segment_glaciers), loads the outputs, takes a screenshot and reports what it saw."""
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

QGIS = shutil.which("qgis")

SCRIPT = r'''
import json, os, sys, traceback
from qgis.core import QgsApplication, QgsProject
from qgis.utils import iface
from qgis.PyQt.QtCore import QTimer
OUT = {out!r}
report = {{"alive": True}}
try:
    import processing
    from processing.core.Processing import Processing
    report["provider"] = QgsApplication.processingRegistry().providerById("glacier_mapper") is not None
    region = processing.runAndLoadResults("glacier_mapper:synthetic_region", {{
        "OUTPUT_FOLDER": os.path.join(OUT, "region"), "SEED": 5, "SIZE_KM": 2, "N_GLACIERS": 3}})
    inventory = region["INVENTORY"]
    model = processing.run("glacier_mapper:train_model", {{
        "INPUT": [region["IMAGERY_START"]], "INVENTORY": inventory, "ID_FIELD": "id", "DEM": region["DEM"],
        "PATCH_SIZE": 64, "ENCODER": "resnet18", "EPOCHS": 1, "BATCH_SIZE": 4, "DEVICE": "cpu", "SEED": 1,
        "OUTPUT_MODEL": os.path.join(OUT, "model.gmm")}})
    seg = processing.runAndLoadResults("glacier_mapper:segment_glaciers", {{
        "INPUT": region["IMAGERY_END"], "DEM": region["DEM"], "MODEL": model["OUTPUT_MODEL"],
        "TILE_SIZE": 128, "OVERLAP": 32, "OUTPUT_PROBABILITY": os.path.join(OUT, "probability.tif"),
        "OUTPUT_MASK": os.path.join(OUT, "mask.tif"), "OUTPUT_POLYGONS": os.path.join(OUT, "glaciers.gpkg")}})
    report["outputs"] = {{k: str(v) for k, v in seg.items()}}
    report["layers"] = sorted(l.name() for l in QgsProject.instance().mapLayers().values())
    report["renderers"] = {{l.name(): l.renderer().type() for l in QgsProject.instance().mapLayers().values()
                           if l.type() == l.RasterLayer}}
    report["probability_legend"] = [item[0] for l in QgsProject.instance().mapLayersByName(
        [n for n in report["layers"] if n.startswith("Glacier probability")][0]) for item in l.legendSymbologyItems()]
    # The Sentinel-2 scene alone on the canvas, rendered as the user sees it: not black.
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
    iface.mapCanvas().zoomToFullExtent()
    iface.mapCanvas().refreshAllLayers()
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

QTimer.singleShot(3000, finish)
'''


def free_display():
    for n in range(90, 140):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise RuntimeError("no free X display")


@pytest.fixture()
def xvfb():
    if not shutil.which("Xvfb"):
        pytest.fail("Xvfb not found: run `make setup`")
    n = free_display()
    proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1600x1000x24", "+extension", "GLX", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(50):
        if Path(f"/tmp/.X11-unix/X{n}").exists():
            break
        time.sleep(0.1)
    yield f":{n}"
    proc.terminate()
    proc.wait(timeout=10)


def test_desktop_runs_the_toolbox_without_loading_the_engine(xvfb, tmp_path):
    if QGIS is None:
        pytest.fail("qgis not found: run `make setup`")
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(out=str(tmp_path)))
    env = dict(os.environ, DISPLAY=xvfb, QT_QPA_PLATFORM="xcb", LIBGL_ALWAYS_SOFTWARE="1")
    env.pop("QGIS_CUSTOM_CONFIG_PATH", None)  # the user's profile, where the plugin is installed
    env.pop("GLACIER_MAPPER_ENGINE", None)     # ... and its record of the engine
    proc = subprocess.run([QGIS, "--nologo", "--noversioncheck", "--code", str(script)], env=env,
                          capture_output=True, text=True, timeout=600)
    report_path = tmp_path / "report.json"
    assert report_path.exists(), f"QGIS died (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    report = json.loads(report_path.read_text())
    assert "error" not in report, report["error"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report["provider"] and report["engine_packages_in_qgis"] == []
    assert report["gl_driver_loaded"], "no GL driver in the QGIS process: the test would prove nothing"
    for key in ("OUTPUT_PROBABILITY", "OUTPUT_MASK", "OUTPUT_POLYGONS"):
        assert Path(report["outputs"][key].split("|")[0]).exists()
    assert any("Glacier probability" in name or "probability" in name.lower() for name in report["layers"])
    assert any("Sentinel-2" in name for name in report["layers"])
    # Styles: the scene shows reflectance (not black), the probability legend reads 0 to 1.
    assert report["scene_mean_value"] > 60, report["scene_mean_value"]
    assert "nan" not in " ".join(report["probability_legend"]).lower(), report["probability_legend"]
    assert report["renderers"]["DEM (hillshade)"] == "hillshade"
    assert any(n.startswith("Glacier probability - S2_L2A_") for n in report["layers"])
    shot = tmp_path / "desktop.png"
    assert shot.exists() and shot.stat().st_size > 20_000
    keep = os.environ.get("GLACIER_MAPPER_SCREENSHOTS")
    if keep:
        shutil.copy(shot, Path(keep) / "desktop_segmentation.png")
        shutil.copy(tmp_path / "scene.png", Path(keep) / "desktop_scene.png")
