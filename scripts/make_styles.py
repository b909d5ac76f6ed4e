"""Writes the QML styles in glacier_mapper_plugin/resources/styles with QGIS itself, so they
load in QGIS 3.22 and later. Run: make styles"""
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
import rasterio.transform
from qgis.core import (QgsApplication, QgsColorRampShader, QgsContrastEnhancement,
                       QgsFillSymbol, QgsGraduatedSymbolRenderer, QgsMultiBandColorRenderer,
                       QgsRendererRange, QgsPalettedRasterRenderer,
                       QgsPalLayerSettings, QgsRasterLayer, QgsRasterShader,
                       QgsSingleBandPseudoColorRenderer, QgsSingleSymbolRenderer,
                       QgsTextBufferSettings, QgsTextFormat, QgsVectorLayer,
                       QgsVectorLayerSimpleLabeling)
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


def rate_style(path):
    """Kept glaciers coloured by area change rate (%/yr, dark red = fastest shrinking);
    filtered ones grey and hatched, labelled with the reason they were filtered."""
    from qgis.core import (QgsPalLayerSettings, QgsRuleBasedLabeling, QgsRuleBasedRenderer,
                           QgsTextFormat)
    layer = QgsVectorLayer("Polygon?crs=EPSG:32632&field=rate_pct_yr:double&field=kept:boolean"
                           "&field=filter_reason:string", "x", "memory")
    classes = [(-100, -4, "#67001f", "< -4"), (-4, -3, "#b2182b", "-4 to -3"),
               (-3, -2, "#d6604d", "-3 to -2"), (-2, -1, "#f4a582", "-2 to -1"),
               (-1, 0, "#fddbc7", "-1 to 0"), (0, 100, "#92c5de", ">= 0")]
    root = QgsRuleBasedRenderer.Rule(None)
    for lo, hi, colour, label in classes:
        symbol = QgsFillSymbol.createSimple({"color": colour, "outline_color": "60,60,60,255",
                                             "outline_width": "0.2"})
        root.appendChild(QgsRuleBasedRenderer.Rule(
            symbol, 0, 0, f'"kept" AND "rate_pct_yr" >= {lo} AND "rate_pct_yr" < {hi}', f"{label} %/yr"))
    filtered = QgsFillSymbol.createSimple({"color": "150,150,150,90", "outline_color": "110,110,110,255",
                                           "outline_width": "0.2", "style": "b_diagonal"})
    root.appendChild(QgsRuleBasedRenderer.Rule(filtered, 0, 0, 'NOT "kept"', "filtered (see filter_reason)"))
    layer.setRenderer(QgsRuleBasedRenderer(root))
    settings = QgsPalLayerSettings()
    settings.fieldName = "filter_reason"
    fmt = QgsTextFormat()
    fmt.setColor(QColor(80, 80, 80))
    fmt.setSize(8)
    settings.setFormat(fmt)
    label_root = QgsRuleBasedLabeling.Rule(None)
    label_root.appendChild(QgsRuleBasedLabeling.Rule(settings, 0, 0, 'NOT "kept"', "filtered"))
    layer.setLabeling(QgsRuleBasedLabeling(label_root))
    layer.setLabelsEnabled(True)
    layer.saveNamedStyle(str(path))


def dem_style(path):
    """The DEM as a translucent hillshade: terrain shows without hiding the imagery it may be
    loaded above."""
    from qgis.core import QgsHillshadeRenderer
    with tempfile.TemporaryDirectory() as tmp:
        layer = _raster(tmp, 1, "float32")
        renderer = QgsHillshadeRenderer(layer.dataProvider(), 1, 315.0, 45.0)
        renderer.setOpacity(0.35)
        layer.setRenderer(renderer)
        layer.saveNamedStyle(str(path))


def _raster(tmp, count, dtype):
    tif = Path(tmp) / f"x{count}{dtype}.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=2, height=2, count=count, dtype=dtype,
                       crs="EPSG:32632", transform=rasterio.transform.from_origin(0, 20, 10, 10)) as dst:
        dst.write(np.arange(4 * count).reshape(count, 2, 2).astype(dtype))
    return QgsRasterLayer(str(tif), "x")


def probability_style(path, maximum):
    with tempfile.TemporaryDirectory() as tmp:
        layer = _raster(tmp, 1, "float32")
        ramp = QgsColorRampShader(0.0, maximum, None, QgsColorRampShader.Interpolated)
        ramp.setColorRampItemList([
            QgsColorRampShader.ColorRampItem(0.0, QColor(255, 255, 255, 0), "0"),
            QgsColorRampShader.ColorRampItem(0.25 * maximum, QColor(199, 233, 180, 120), ""),
            QgsColorRampShader.ColorRampItem(0.5 * maximum, QColor(65, 182, 196, 200), "0.5"),
            QgsColorRampShader.ColorRampItem(maximum, QColor(8, 29, 88, 255), str(maximum))])
        shader = QgsRasterShader()
        shader.setRasterShaderFunction(ramp)
        renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
        renderer.setClassificationMin(0.0)  # else the legend reads "nan ... nan"
        renderer.setClassificationMax(maximum)
        layer.setRenderer(renderer)
        layer.saveNamedStyle(str(path))


def mask_style(path):
    with tempfile.TemporaryDirectory() as tmp:
        layer = _raster(tmp, 1, "uint8")
        classes = [QgsPalettedRasterRenderer.Class(0, QColor(0, 0, 0, 0), "not glacier"),
                   QgsPalettedRasterRenderer.Class(1, QColor(0, 200, 255, 180), "glacier")]
        layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
        layer.saveNamedStyle(str(path))


def natural_colour_style(path):
    with tempfile.TemporaryDirectory() as tmp:
        layer = _raster(tmp, 6, "uint16")
        renderer = QgsMultiBandColorRenderer(layer.dataProvider(), 3, 2, 1)
        for setter in (renderer.setRedContrastEnhancement, renderer.setGreenContrastEnhancement,
                       renderer.setBlueContrastEnhancement):
            ce = QgsContrastEnhancement(layer.dataProvider().dataType(1))
            # QGIS applies the file's scale/offset, so values are surface reflectance: 0-0.6
            # shows rock and debris and leaves snow bright.
            ce.setMinimumValue(0.0)
            ce.setMaximumValue(0.6)
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
    probability_style(STYLES / "probability.qml", 1.0)
    probability_style(STYLES / "probability_percent.qml", 100.0)
    mask_style(STYLES / "mask.qml")
    outline_style(STYLES / "glacier_polygons.qml", "255,120,0,255")
    rate_style(STYLES / "area_change.qml")
    dem_style(STYLES / "dem.qml")
    print("styles written to", STYLES)
    app.exitQgis()
    sys.exit(0)
