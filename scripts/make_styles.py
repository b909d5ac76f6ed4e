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


def _rules(path, fields, classes, outline="60,60,60,255"):
    """A polygon layer's rule-based renderer: (filter, label, fill colour, fill style) each."""
    from qgis.core import QgsRuleBasedRenderer
    layer = QgsVectorLayer(f"Polygon?crs=EPSG:32632&{fields}", "x", "memory")
    root = QgsRuleBasedRenderer.Rule(None)
    for expression, label, colour, style in classes:
        symbol = QgsFillSymbol.createSimple({"color": colour, "outline_color": outline,
                                             "outline_width": "0.3", "style": style})
        root.appendChild(QgsRuleBasedRenderer.Rule(symbol, 0, 0, expression, label))
    layer.setRenderer(QgsRuleBasedRenderer(root))
    layer.saveNamedStyle(str(path))


def evaluation_style(path):
    """Glaciers by the recall of the map inside their outline: the paper's filter (0.75) is a
    class edge; glaciers the map never saw (no valid pixel) grey and hatched."""
    _rules(path, "field=recall:double", [
        ('"recall" >= 0.9', "recall >= 0.9", "26,152,80,170", "solid"),
        ('"recall" >= 0.75 AND "recall" < 0.9', "0.75 to 0.9", "166,217,106,170", "solid"),
        ('"recall" >= 0.5 AND "recall" < 0.75', "0.5 to 0.75 (below the paper's 0.75)", "253,174,97,170", "solid"),
        ('"recall" < 0.5', "recall < 0.5", "215,48,39,170", "solid"),
        ('"recall" IS NULL', "not seen (no valid pixel)", "150,150,150,120", "b_diagonal")])


FOLD_COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
                "#ff9da7", "#9c755f", "#bab0ac")  # Tableau 10: folds told apart at a glance


def folds_style(path):
    """One colour per fold; folds beyond ten reuse the colours (fold 11 as fold 1)."""
    _rules(path, "field=fold:integer", [
        (f'"fold" % 10 = {k % 10}', f"fold {k}",
         ",".join(map(str, QColor(c).getRgb()[:3])) + ",170", "solid")
        for k, c in enumerate(FOLD_COLOURS, start=1)])


STYLES_MADE = {
    "inventory.qml": lambda p: outline_style(p, "0,180,255,255", "name"),
    "s2_natural_colour.qml": natural_colour_style,
    "probability.qml": lambda p: probability_style(p, 1.0),
    "probability_percent.qml": lambda p: probability_style(p, 100.0),
    "mask.qml": mask_style,
    "glacier_polygons.qml": lambda p: outline_style(p, "255,120,0,255"),
    "area_change.qml": rate_style,
    "dem.qml": dem_style,
    "evaluation.qml": evaluation_style,
    "folds.qml": folds_style,
}

if __name__ == "__main__":
    # make styles [NAME.qml ...]: all styles, or the ones named (the others keep their keys)
    app = QgsApplication([], False)
    app.initQgis()
    STYLES.mkdir(parents=True, exist_ok=True)
    for name, make in STYLES_MADE.items():
        if len(sys.argv) < 2 or name in sys.argv[1:]:
            make(STYLES / name)
    print("styles written to", STYLES)
    app.exitQgis()
    sys.exit(0)
