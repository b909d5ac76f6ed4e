"""Writes the QML styles in glacier_mapper_plugin/resources/styles with QGIS itself, so they
load in QGIS 3.22 and later. Run: make styles"""
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from qgis.core import (QgsApplication, QgsContrastEnhancement, QgsFillSymbol,
                       QgsMultiBandColorRenderer, QgsPalLayerSettings, QgsRasterLayer,
                       QgsSingleSymbolRenderer, QgsTextBufferSettings, QgsTextFormat,
                       QgsVectorLayer, QgsVectorLayerSimpleLabeling)
from qgis.PyQt.QtGui import QColor

STYLES = Path(__file__).resolve().parent.parent / "glacier_mapper_plugin" / "resources" / "styles"


def outline_style(path, colour, label_field=None):
    layer = QgsVectorLayer("Polygon?crs=EPSG:32632&field=name:string", "x", "memory")
    symbol = QgsFillSymbol.createSimple({"style": "no", "outline_color": colour,
                                         "outline_width": "0.5", "joinstyle": "round"})
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    if label_field:
        settings = QgsPalLayerSettings()
        settings.fieldName = label_field
        fmt = QgsTextFormat()
        fmt.setSize(8)
        fmt.setColor(QColor("white"))
        buf = QgsTextBufferSettings()
        buf.setEnabled(True)
        buf.setColor(QColor(0, 60, 120))
        fmt.setBuffer(buf)
        settings.setFormat(fmt)
        layer.setLabeling(QgsVectorLayerSimpleLabeling(settings))
        layer.setLabelsEnabled(True)
    layer.saveNamedStyle(str(path))


def natural_colour_style(path):
    with tempfile.TemporaryDirectory() as tmp:
        tif = Path(tmp) / "x.tif"
        with rasterio.open(tif, "w", driver="GTiff", width=2, height=2, count=6, dtype="uint16") as dst:
            dst.write(np.ones((6, 2, 2), np.uint16))
        layer = QgsRasterLayer(str(tif), "x")
        renderer = QgsMultiBandColorRenderer(layer.dataProvider(), 3, 2, 1)
        for setter in (renderer.setRedContrastEnhancement, renderer.setGreenContrastEnhancement,
                       renderer.setBlueContrastEnhancement):
            ce = QgsContrastEnhancement(layer.dataProvider().dataType(1))
            # Reflectance 0..0.85 (DN with the -1000 offset of baselines >= 04.00).
            ce.setMinimumValue(1000)
            ce.setMaximumValue(9500)
            ce.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
            setter(ce)
        layer.setRenderer(renderer)
        layer.saveNamedStyle(str(path))


if __name__ == "__main__":
    app = QgsApplication([], False)
    app.initQgis()
    STYLES.mkdir(parents=True, exist_ok=True)
    outline_style(STYLES / "inventory.qml", "0,180,255,255", "name")
    natural_colour_style(STYLES / "s2_natural_colour.qml")
    print("styles written to", STYLES)
    app.exitQgis()
    sys.exit(0)
