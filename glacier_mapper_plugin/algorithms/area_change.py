"""glacier_mapper:area_change -> core.area_change.area_change (+ core.report)."""
import datetime as dt

from qgis.core import (QgsProcessing, QgsProcessingException, QgsProcessingOutputHtml,
                       QgsProcessingOutputNumber, QgsProcessingParameterFeatureSink,
                       QgsProcessingParameterField, QgsProcessingParameterFileDestination,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber,
                       QgsWkbTypes)

from .base import GlacierMapperAlgorithm, style_output
from .layers import fields_for, inventory_from_source, source_geometries, write_rows

GLACIER_TYPES = {"area_inventory_km2": float, "area_start_km2": float, "area_end_km2": float,
                 "recall": float, "recall_end": float, "masked_start": float, "masked_end": float,
                 "year_start": float, "year_end": float, "rate_km2_yr": float, "rate_pct_yr": float,
                 "area_start_sigma_km2": float, "area_end_sigma_km2": float,
                 "rate_sigma_km2_yr": float, "rate_sigma_pct_yr": float, "snr": float,
                 "kept": bool, "filter_reason": str}


def year_of(value):
    """Decimal year of a date-like attribute (QDate, date, 'YYYY-MM-DD', 2015, '2015')."""
    from ..core.area_change import decimal_year
    if value is None:
        return float("nan")
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return decimal_year(value)
    text = str(value).strip().replace("/", "-")
    try:
        return decimal_year(dt.date.fromisoformat(text[:10]))
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return float("nan")


class AreaChangeAlgorithm(GlacierMapperAlgorithm):
    ALG_ID = "area_change"
    DISPLAY = "Glacier area change"
    GROUP, GROUP_ID = "Area change", "area_change"
    HELP = ("Per-glacier and regional glacier area change with the filters of Diaconu & "
            "Bamber (2023): predicted glacier area inside each inventory outline at the start "
            "(inventory) and end dates, on the ellipsoid, with masked pixels filled in with "
            "the recall seen on the unmasked ones; rate in km2/yr and %/yr of the start area; "
            "glaciers with recall < MIN_RECALL or a masked share > MAX_MASKED at either date, "
            "and the TRIM_PERCENT most extreme rates, are flagged (kept = false) with the "
            "reason, never dropped. With ensembles (several predictions per date) each rate "
            "gets sigma = sqrt(s0² + s1²)/dt (DL4GAM) and an optional signal-to-noise filter. "
            "Writes the inventory with all columns (styled by rate), a regional summary, the "
            "Paul et al. (2020) size-class table and an HTML report with the paper's plots.")
    PARAM_HELP = {
        "INVENTORY": "Glacier outlines at the start date (any CRS).",
        "ID_FIELD": "Field with the glacier id (default: feature id).",
        "DATE_FIELD": "Field with the inventory date or year, used for the start year when "
                      "neither START_YEAR nor a DATE tag in the rasters gives it.",
        "START": "Prediction(s) at the start date: one mosaic or per-glacier rasters "
                 "(probability 0-1, percent 0-100 or 0/1 mask).",
        "END": "Prediction(s) at the end date, as START.",
        "START_YEAR": "Start year (decimal allowed); empty: the rasters' DATE tag, else DATE_FIELD.",
        "END_YEAR": "End year; empty: the rasters' DATE tag.",
        "START_QUALITY": "Rasters with an SCL/QUALITY band on the grids of START, same order "
                         "(e.g. the imagery): cloud, shadow and no-data pixels are masked.",
        "END_QUALITY": "As START_QUALITY for END.",
        "START_ENSEMBLE": "Optional ensemble members at the start date (one raster per member).",
        "END_ENSEMBLE": "Optional ensemble members at the end date (one raster per member).",
        "MIN_RECALL": "Minimum recall of the start prediction inside the outline (paper: 0.75).",
        "MAX_MASKED": "Maximum masked share of an outline at either date (paper: 0.20).",
        "TRIM_PERCENT": "Share of the most extreme rates dropped, half from each tail (paper: 5).",
        "MIN_SNR": "With ensembles: minimum |rate| / sigma_rate (0: no filter).",
        "THRESHOLD": "Probability at or above which a pixel is glacier.",
        "OUTLINE_UNCERTAINTY_PX": "Buffer-method area uncertainty: +- this many pixels along each "
                                  "outline, added in quadrature to the ensemble spread (0: none).",
        "OUTPUT": "Inventory polygons with the per-glacier area change columns.",
        "OUTPUT_SUMMARY": "Regional summary (one row).",
        "OUTPUT_SIZE_CLASSES": "Size-class table (Paul et al. 2020 classes).",
        "OUTPUT_REPORT": "HTML report with plots, parameters and filter counts.",
    }

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.add_inventory_parameters()
        self.addParameter(QgsProcessingParameterField("DATE_FIELD", "Inventory date field", parentLayerParameterName="INVENTORY", optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers("START", "Start prediction(s)", QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterMultipleLayers("END", "End prediction(s)", QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterNumber("START_YEAR", "Start year", QgsProcessingParameterNumber.Double, None, True, 1950, 2200))
        self.addParameter(QgsProcessingParameterNumber("END_YEAR", "End year", QgsProcessingParameterNumber.Double, None, True, 1950, 2200))
        self.addParameter(QgsProcessingParameterMultipleLayers("START_QUALITY", "Start quality (SCL)", QgsProcessing.TypeRaster, optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers("END_QUALITY", "End quality (SCL)", QgsProcessing.TypeRaster, optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers("START_ENSEMBLE", "Start ensemble", QgsProcessing.TypeRaster, optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers("END_ENSEMBLE", "End ensemble", QgsProcessing.TypeRaster, optional=True))
        self.addParameter(QgsProcessingParameterNumber("MIN_RECALL", "Minimum recall", QgsProcessingParameterNumber.Double, 0.75, False, 0.0, 1.0))
        self.addParameter(QgsProcessingParameterNumber("MAX_MASKED", "Maximum masked share", QgsProcessingParameterNumber.Double, 0.20, False, 0.0, 1.0))
        self.addParameter(QgsProcessingParameterNumber("TRIM_PERCENT", "Extreme rates dropped (%)", QgsProcessingParameterNumber.Double, 5.0, False, 0.0, 50.0))
        self.addParameter(QgsProcessingParameterNumber("MIN_SNR", "Minimum signal-to-noise", QgsProcessingParameterNumber.Double, 0.0, False, 0.0))
        self.addParameter(QgsProcessingParameterNumber("THRESHOLD", "Threshold", QgsProcessingParameterNumber.Double, 0.5, False, 0.0, 1.0))
        self.addParameter(QgsProcessingParameterNumber("OUTLINE_UNCERTAINTY_PX", "Outline uncertainty (pixels)", QgsProcessingParameterNumber.Double, 0.5, False, 0.0, 10.0))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", "Area change", QgsProcessing.TypeVectorPolygon))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT_SUMMARY", "Regional summary", QgsProcessing.TypeVector))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT_SIZE_CLASSES", "Size classes", QgsProcessing.TypeVector))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT_REPORT", "Report", "HTML files (*.html)", optional=True, createByDefault=True))
        self.addOutput(QgsProcessingOutputNumber("REGIONAL_RATE", "Regional rate (%/yr)"))
        self.addOutput(QgsProcessingOutputNumber("N_KEPT", "Glaciers kept"))
        self.addOutput(QgsProcessingOutputHtml("REPORT_HTML", "Area change report"))

    def _paths(self, parameters, name, context):
        return [layer.source() for layer in self.parameterAsLayerList(parameters, name, context)]

    def _optional_number(self, parameters, name, context):
        value = parameters.get(name)
        return None if value in (None, "") else self.parameterAsDouble(parameters, name, context)

    def execute(self, parameters, context, feedback, progress):
        from ..core.area_change import AreaChangeOptions, area_change
        from ..core.report import write_report
        source = self.parameterAsSource(parameters, "INVENTORY", context)
        inventory = inventory_from_source(source, self.parameterAsString(parameters, "ID_FIELD", context) or None)
        date_field = self.parameterAsString(parameters, "DATE_FIELD", context)
        years = [year_of(r.get(date_field)) for r in inventory.records] if date_field else None
        options = AreaChangeOptions(
            min_recall=self.parameterAsDouble(parameters, "MIN_RECALL", context),
            max_masked=self.parameterAsDouble(parameters, "MAX_MASKED", context),
            trim_percent=self.parameterAsDouble(parameters, "TRIM_PERCENT", context),
            min_snr=self.parameterAsDouble(parameters, "MIN_SNR", context),
            threshold=self.parameterAsDouble(parameters, "THRESHOLD", context),
            outline_uncertainty_px=self.parameterAsDouble(parameters, "OUTLINE_UNCERTAINTY_PX", context),
            start_year=self._optional_number(parameters, "START_YEAR", context),
            end_year=self._optional_number(parameters, "END_YEAR", context))
        start_ens = self._paths(parameters, "START_ENSEMBLE", context)
        end_ens = self._paths(parameters, "END_ENSEMBLE", context)
        if bool(start_ens) != bool(end_ens):
            raise QgsProcessingException("START_ENSEMBLE and END_ENSEMBLE go together: give both or neither")
        result = area_change(
            inventory, self._paths(parameters, "START", context), self._paths(parameters, "END", context),
            self._paths(parameters, "START_QUALITY", context) or None,
            self._paths(parameters, "END_QUALITY", context) or None, options, years,
            [[p] for p in start_ens] or None, [[p] for p in end_ens] or None, progress)

        rows = [dict(r, id=str(r["id"])) for r in result.glaciers]
        types = {k: v for k, v in GLACIER_TYPES.items() if k in rows[0]}
        out_fields = source.fields()
        for f in fields_for(rows, types):
            if f.name() in types:
                out_fields.append(f)
        sink, out_id = self.parameterAsSink(parameters, "OUTPUT", context, out_fields,
                                            source.wkbType(), source.sourceCrs())
        write_rows(sink, out_fields, [dict(rec, **{k: r[k] for k in types})
                                      for rec, r in zip(inventory.records, rows)],
                   source_geometries(source))
        summary_fields = fields_for([result.regional])
        s_sink, summary_id = self.parameterAsSink(parameters, "OUTPUT_SUMMARY", context, summary_fields, QgsWkbTypes.NoGeometry)
        write_rows(s_sink, summary_fields, [result.regional])
        size_fields = fields_for(result.size_classes, {"size_class": str, "n": int, "n_kept": int})
        c_sink, classes_id = self.parameterAsSink(parameters, "OUTPUT_SIZE_CLASSES", context, size_fields, QgsWkbTypes.NoGeometry)
        write_rows(c_sink, size_fields, result.size_classes)
        report = self.parameterAsFileOutput(parameters, "OUTPUT_REPORT", context)
        if report:
            used = {d.name(): parameters.get(d.name(), d.defaultValue())
                    for d in self.parameterDefinitions() if not d.name().startswith("OUTPUT")}
            write_report(report, result, used)
        del sink, s_sink, c_sink  # closes the files (QGIS finalises a sink when it is deleted)
        style_output(context, out_id, "area_change.qml")
        for reason, count in sorted(result.filter_counts.items()):
            progress.info(f"{count:5d} glaciers: {reason}")
        return {"OUTPUT": out_id, "OUTPUT_SUMMARY": summary_id, "OUTPUT_SIZE_CLASSES": classes_id,
                "OUTPUT_REPORT": report, "REPORT_HTML": report,
                "REGIONAL_RATE": result.regional["rate_pct_yr"], "N_KEPT": result.regional["n_kept"]}
