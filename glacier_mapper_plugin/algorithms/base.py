"""What every Glacier Mapper algorithm shares: names, help, and the run itself: parameters
become plain values (feature sources are exported to a temporary GeoPackage), the engine
process runs the step (engine/client.py) while its progress and log reach
QgsProcessingFeedback, and its GeoPackages are copied into the sinks the user chose. Nothing
here imports numpy, torch or any other package of the engine."""
from __future__ import annotations

import collections
import contextlib
import csv
import html
import os
from pathlib import Path

from qgis.core import (QgsApplication, QgsFeature, QgsFeatureSink, QgsFields, QgsProcessing,
                       QgsProcessingAlgorithm, QgsProcessingContext, QgsProcessingException,
                       QgsProcessingLayerPostProcessorInterface, QgsProcessingParameterDefinition,
                       QgsProcessingParameterEnum, QgsProcessingParameterFeatureSource,
                       QgsProcessingParameterField, QgsProcessingParameterNumber,
                       QgsProcessingParameterString, QgsProcessingUtils,
                       QgsMapLayer, QgsProcessingOutputLayerDefinition, QgsVectorFileWriter,
                       QgsVectorLayer)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..engine import client

PLUGIN_DIR = Path(__file__).resolve().parent.parent
STYLES = PLUGIN_DIR / "resources" / "styles"
HELP_URL = "https://github.com/glacier-mapper/glacier-mapper#algorithms"


class FeedbackListener:
    """What the engine says, forwarded to QgsProcessingFeedback; its cancel flag read back."""

    def __init__(self, feedback):
        self.feedback = feedback

    def progress(self, fraction):
        if self.feedback is not None:
            self.feedback.setProgress(100.0 * min(max(fraction, 0.0), 1.0))

    def info(self, message):
        if self.feedback is not None:
            self.feedback.pushInfo(message)

    def warning(self, message):
        if self.feedback is None:
            return
        if hasattr(self.feedback, "pushWarning"):
            self.feedback.pushWarning(message)
        else:  # QGIS < 3.20
            self.feedback.reportError(message, False)

    def debug(self, message):
        if self.feedback is not None:
            self.feedback.pushDebugInfo(message)

    def cancelled(self):
        return self.feedback is not None and self.feedback.isCanceled()


class OptionOrIndex(QgsProcessingParameterEnum):
    """An enum whose values are its option strings (DEVICE=cpu on the command line) that also
    takes an option's index (DEVICE=3), as `qgis_process help` lists them and every other QGIS
    enum accepts them."""

    def checkValueIsAcceptable(self, value, context=None):  # noqa: N802 (QGIS API name)
        return self.option(value) is not None or super().checkValueIsAcceptable(value, context)

    def option(self, value):
        """The option a value names (its text or its index), or None."""
        text = str(value).strip() if value is not None else ""
        if text in self.options():
            return text
        if text.isdigit() and int(text) < len(self.options()):
            return self.options()[int(text)]
        return None


def string_enum(name, description, options):
    """An enum whose values are its option strings, or their indexes (OptionOrIndex)."""
    param = OptionOrIndex(name, description, options, defaultValue=options[0])
    param.setUsesStaticStrings(True)
    return param


# Help of the parameters several algorithms share.
SHARED_HELP = {"GLIMS_ANALYSIS": (
    "For a GLIMS extract as distributed (one row per polygon, line_type): outlines are glac_bound minus "
    "intrnl_rock per glacier and analysis, debris_cov kept as glacier. Of a glacier's several analyses: "
    "empty or newest, the newest; a date YYYY-MM-DD, the one nearest it; all, every analysis as its own "
    "feature (id glac_id@date in the column glims_analysis).")}


# OGR reads a CSV's columns as text unless a .csvt sidecar names their types.
CSVT_TYPES = {"integer": "Integer", "integer64": "Integer64", "int8": "Integer64", "real": "Real",
              "double": "Real", "date": "Date", "datetime": "DateTime", "boolean": "Integer(Boolean)"}


def write_csvt(csv_path, fields) -> None:
    """The .csvt beside a CSV output, so that QGIS and OGR read numbers as numbers (sorting,
    statistics, expressions); a WKT geometry column is named as such."""
    with open(csv_path, encoding="utf-8-sig") as f:
        header = next(csv.reader(f), [])
    types = {fld.name(): CSVT_TYPES.get(fld.typeName().lower(), "String") for fld in fields}
    names = ["WKT" if name.upper() == "WKT" and name not in types else types.get(name, "String") for name in header]
    Path(csv_path).with_suffix(".csvt").write_text(",".join(f'"{t}"' for t in names) + "\n", encoding="utf-8")


@contextlib.contextmanager
def no_side_files():
    """While our algorithm checks and runs, GDAL writes no .aux.xml beside the rasters QGIS
    opens for it (QGIS loads raster parameters to validate them, and the statistics it
    computes would otherwise land next to the user's inputs). Thread-local: the rest of QGIS
    keeps its settings."""
    try:
        from osgeo import gdal
    except ImportError:  # pragma: no cover - QGIS always ships GDAL's bindings
        yield
        return
    previous = gdal.GetThreadLocalConfigOption("GDAL_PAM_ENABLED", None)
    gdal.SetThreadLocalConfigOption("GDAL_PAM_ENABLED", "NO")
    try:
        yield
    finally:
        gdal.SetThreadLocalConfigOption("GDAL_PAM_ENABLED", previous)


def as_date(value):
    """A QDate from what a date parameter holds (QDate, QDateTime or text; QGIS 3.22 has no
    parameterAsDate)."""
    from qgis.PyQt.QtCore import QDate, QDateTime, Qt
    if isinstance(value, QDateTime):
        return value.date()
    if isinstance(value, QDate):
        return value
    return QDate.fromString(str(value).strip()[:10], Qt.DateFormat.ISODate)


def file_path(value) -> str | None:
    """`value` when it is the path of an existing file (optionally with |layername=...)."""
    if isinstance(value, (str, Path)) and str(value) and os.path.exists(str(value).split("|")[0]):
        return str(value)
    return None


def sink_file(value, context) -> str | None:
    """The file a feature sink will write, or None for memory and database outputs."""
    if isinstance(value, QgsProcessingOutputLayerDefinition):
        value = value.sink.valueAsString(context.expressionContext())[0]
    text = str(value or "")
    if not text or text == QgsProcessing.TEMPORARY_OUTPUT or text.startswith(("memory:", "postgres:", "ogr:", "spatialite:")):
        return None
    return text


def profile_dir() -> Path | None:
    path = QgsApplication.qgisSettingsDirPath()
    return Path(path) if path else None


RANK = "glacier_mapper/rank"  # a layer-tree property: the layer's place in its run's group


class StyleOnLoad(QgsProcessingLayerPostProcessorInterface):
    """Applies a QML style from resources/styles when an output loads into the project, and
    puts the layer in its run's group at its rank (0 on top)."""

    def __init__(self, qml: str | None, group: str | None = None, rank: int = 0, opacity: float | None = None):
        super().__init__()
        self.qml = str(STYLES / qml) if qml else None
        self.group, self.rank, self.opacity = group, rank, opacity

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API name)
        if layer is None or not layer.isValid():
            return
        if self.qml:
            layer.loadNamedStyle(self.qml)
        if self.opacity is not None:
            layer.setOpacity(self.opacity)
        layer.triggerRepaint()
        project = context.project()
        if self.group and project is not None:
            place_in_group(project.layerTreeRoot(), layer, self.group, self.rank)


def place_in_group(root, layer, group_name: str, rank: int) -> None:
    """Move `layer` into the group `group_name` (made at the top of the tree when new), above
    the layers of a higher rank. QGIS before 3.32 puts every loaded output at the top of the
    tree, in the order the outputs happen to load; QGIS 3.32 and later place it themselves
    from the details' groupName and layerSortKey (then the layer is not in the tree yet)."""
    node = root.findLayer(layer.id())
    if node is None:
        return
    group = root.findGroup(group_name) or root.insertGroup(0, group_name)
    position = sum(1 for child in group.children() if (child.customProperty(RANK) or 0) < rank)
    clone = node.clone()
    clone.setCustomProperty(RANK, rank)
    group.insertChildNode(position, clone)
    node.parent().removeChildNode(node)


# QGIS takes ownership of a post-processor and runs a *clone* of the algorithm: a Python
# reference must keep each new post-processor's wrapper alive until QGIS has used it (the
# pattern of the PyQGIS cookbook); QGIS deletes the C++ side, so each load gets a new one.
_LIVE_STYLERS: collections.deque = collections.deque(maxlen=512)


def styler(qml: str | None, group: str | None = None, rank: int = 0, opacity: float | None = None) -> StyleOnLoad:
    post = StyleOnLoad(qml, group, rank, opacity)
    _LIVE_STYLERS.append(post)
    return post


def layer_hint(path):
    """Raster or vector, from the file name of an output."""
    raster = str(path).split("|")[0].lower().endswith((".tif", ".tiff", ".vrt", ".nc"))
    return QgsProcessingUtils.LayerHint.Raster if raster else QgsProcessingUtils.LayerHint.Vector


def style_output(context, path, qml: str | None, name: str | None = None, group: str | None = None,
                 rank: int = 0, opacity: float | None = None) -> None:
    """Style, name and place (in `group`, at `rank`) a destination output that QGIS will load
    when the algorithm completes."""
    if path and context.willLoadLayerOnCompletion(path):
        details = context.layerToLoadOnCompletionDetails(path)
        details.layerTypeHint = layer_hint(path)  # QGIS then tries no other provider (no OGR warnings)
        if name:
            details.name = name
        place(details, qml, group, rank, opacity)


def place(details, qml: str | None, group: str | None, rank: int = 0, opacity: float | None = None) -> None:
    """The post-processor that styles and places a layer; on QGIS >= 3.32 also the details'
    group and sort key, from which QGIS places the layer itself."""
    details.setPostProcessor(styler(qml, group, rank, opacity))
    if group and hasattr(details, "groupName"):
        details.groupName, details.layerSortKey = group, rank


def present(context, outputs, run: str, layers) -> None:
    """All of one run's loaded outputs in one group named after the run, top to bottom in the
    order of `layers`: (output name, QML or None, layer name[, opacity]) each."""
    for rank, (key, qml, name, *opacity) in enumerate(layers):
        style_output(context, outputs.get(key), qml, name, run, rank, opacity[0] if opacity else None)


def run_name(what: str, subject: str) -> str:
    """A group name that tells the runs apart: what was done, to what, when."""
    import datetime
    return f"{what}: {subject} ({datetime.datetime.now():%H:%M:%S})"


DASK_HELP = ("Address of a Dask scheduler (tcp://host:8786, or the .json scheduler file that "
             "`dask scheduler --scheduler-file` and dask-jobqueue write) whose workers run the "
             "engine's environment and see the same paths (a shared filesystem): the algorithm's "
             "independent pieces then run there as Dask tasks, with progress and cancel from here. "
             "Empty: everything runs on this computer. See the README, 'On a cluster'.")


class GlacierMapperAlgorithm(QgsProcessingAlgorithm):
    """Subclasses set ALG_ID (also the engine's step), DISPLAY, GROUP/GROUP_ID, HELP and
    PARAM_HELP, implement initAlgorithm, and may style or load outputs in finish()."""

    ALG_ID = ""
    DISPLAY = ""
    GROUP = ""
    GROUP_ID = ""
    HELP = ""
    PARAM_HELP: dict[str, str] = {}
    NEEDS_ENGINE = True
    ADVANCED: frozenset = frozenset()  # parameter names shown under "Advanced parameters"
    KEEP: frozenset = frozenset()      # outputs a user must keep: warned of when left temporary

    def tr(self, text):
        return QCoreApplication.translate("GlacierMapper", text)

    def name(self):
        return self.ALG_ID

    def displayName(self):  # noqa: N802 (QGIS API name)
        return self.tr(self.DISPLAY)

    def group(self):
        return self.tr(self.GROUP)

    def groupId(self):  # noqa: N802 (QGIS API name)
        return self.GROUP_ID

    def icon(self):
        return QIcon(str(PLUGIN_DIR / "resources" / "icon.svg"))

    def helpUrl(self):  # noqa: N802 (QGIS API name)
        return HELP_URL

    def shortHelpString(self):  # noqa: N802 (QGIS API name)
        """The help panel is HTML: texts are escaped ("recall < MIN_RECALL" must not vanish),
        and parameters are named by the labels the form shows, ids in parentheses for
        qgis_process and glacier-mapper users."""
        labels = {d.name(): d.description() for d in self.parameterDefinitions()}
        labels.update({d.name(): d.description() for d in self.outputDefinitions()})
        lines = [html.escape(self.tr(self.HELP)), "", "<b>Parameters</b>"]
        for name, text in self.PARAM_HELP.items():
            label = labels.get(name, name)
            lines.append(f"<b>{html.escape(label)}</b> ({name}): {html.escape(self.tr(text))}")
        return "<br>".join(lines)

    def createInstance(self):  # noqa: N802 (QGIS API name)
        return type(self)()

    def addParameter(self, parameter, createOutput=True):  # noqa: N802,N803 (QGIS API name)
        text = self.PARAM_HELP.get(parameter.name()) or SHARED_HELP.get(parameter.name())
        if text and hasattr(parameter, "setHelp"):
            parameter.setHelp(self.tr(text))
        if parameter.name() in self.ADVANCED | {"DASK_SCHEDULER", "GLIMS_ANALYSIS"}:  # expert settings fold away
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
        return super().addParameter(parameter, createOutput)

    def add_dask_parameter(self):
        """DASK_SCHEDULER, an advanced string: where the algorithm's pieces run."""
        self.addParameter(QgsProcessingParameterString("DASK_SCHEDULER", "Dask scheduler (empty: run here)",
                                                       defaultValue="", optional=True))

    def add_inventory_parameters(self):
        """INVENTORY (glacier polygons, any CRS) and ID_FIELD, as every inventory-driven
        algorithm names them."""
        self.addParameter(QgsProcessingParameterFeatureSource("INVENTORY", "Inventory", [QgsProcessing.SourceType.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterField("ID_FIELD", "Glacier id field", parentLayerParameterName="INVENTORY",
                                                      optional=True))
        self.add_glims_parameter()

    def add_glims_parameter(self):
        """GLIMS_ANALYSIS (advanced): which of a GLIMS glacier's dated analyses is its outline."""
        self.addParameter(QgsProcessingParameterString("GLIMS_ANALYSIS", "GLIMS analysis (newest, all or a date)",
                                                       defaultValue="", optional=True))

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API name)
        if self.NEEDS_ENGINE:
            try:
                client.engine_python(profile_dir())
            except client.EngineMissing as err:
                return False, str(err)
        with no_side_files():
            return super().checkParameterValues(parameters, context)

    # ------------------------------------------------------------------ the run

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        temporary: list[str] = []
        try:
            with no_side_files():
                params, sinks = self.engine_parameters(parameters, context, feedback, temporary)
            self.check_outputs(parameters, context, params)
            self.warn_of_temporary(params, feedback)
            try:
                result = client.run_step(self.ALG_ID, params, FeedbackListener(feedback), profile_dir())
            except client.EngineError as err:
                raise QgsProcessingException(str(err)) from None
            outputs = dict(result)
            for name, tmp in sinks.items():
                if result.get(name):
                    outputs[name] = self.copy_to_sink(parameters, name, context, tmp)
            self.finish(parameters, context, outputs, params)
            return outputs
        finally:
            for path in temporary:
                for leftover in (path, path + "-wal", path + "-shm"):
                    with contextlib.suppress(OSError):
                        os.remove(leftover)

    def warn_of_temporary(self, params, feedback) -> None:
        """Outputs a user must keep (a trained model) left at QGIS's default, a temporary file:
        QGIS deletes its temporary folder when it closes, so say so before the work starts."""
        temp = os.path.realpath(QgsProcessingUtils.tempFolder())
        for name in self.KEEP:
            path = params.get(name)
            if path and os.path.realpath(str(path)).startswith(temp + os.sep):
                feedback.pushWarning(f"{name} goes to a temporary file ({path}) that QGIS deletes when it closes: "
                                     f"give {name} a file name to keep it")

    def check_outputs(self, parameters, context, params) -> None:
        """No output may be one of the inputs as the user named them (the engine only sees
        the exported copies of feature sources), and every output must be writable."""
        from ..engine import outputs
        originals = dict(params)
        for d in self.parameterDefinitions():
            if d.type() == "source":
                value = parameters.get(d.name())
                layer = None if file_path(value) else self.parameterAsVectorLayer(parameters, d.name(), context)
                originals[d.name()] = file_path(value) or (layer.source() if layer is not None else None)
            elif d.type() == "sink" and d.name() in params:
                # The engine writes a temporary GeoPackage that QGIS copies into the user's file
                # at the end: that file is checked now, before any work, not after it.
                originals[d.name()] = sink_file(parameters.get(d.name()), context)
        try:
            outputs.check(self.ALG_ID, originals)
        except ValueError as err:
            raise QgsProcessingException(str(err)) from None

    def finish(self, parameters, context, outputs, params) -> None:
        """Styles and layers to load on completion (subclasses); `params` are the values the
        engine ran with (file paths, not layers)."""

    def engine_parameters(self, parameters, context, feedback, temporary):
        """(plain values for the engine, {sink name: temporary GeoPackage}) by parameter type."""
        params, sinks = {}, {}
        for d in self.parameterDefinitions():
            name, kind = d.name(), d.type()
            given = parameters.get(name) not in (None, "")
            if kind == "source":
                source = self.parameterAsSource(parameters, name, context)
                if source is None:
                    if given or not (d.flags() & QgsProcessingParameterDefinition.Flag.FlagOptional):
                        raise QgsProcessingException(f"{name}: layer not found")
                    continue
                params[name] = self.export_source(source, name, context, feedback, temporary)
                # Reports name the user's layer (or file), not the temporary export.
                path = file_path(parameters.get(name))
                layer = None if path else self.parameterAsVectorLayer(parameters, name, context)
                if path or layer is not None:
                    params.setdefault("_NAMES", {})[name] = path or f"{layer.name()} ({layer.publicSource()})"
            elif kind == "raster":
                # A file path goes to the engine as it is: loading it as a QGIS layer would
                # compute statistics and write an .aux.xml beside the user's input.
                path = file_path(parameters.get(name))
                layer = None if path or not given else self.parameterAsRasterLayer(parameters, name, context)
                if given and not path and layer is None:
                    raise QgsProcessingException(f"{name}: raster layer not found")
                params[name] = path or (layer.source() if layer is not None else None)
            elif kind == "multilayer":
                values = parameters.get(name) or []
                values = values if isinstance(values, (list, tuple)) else [values]
                paths = [file_path(v) for v in values]
                params[name] = paths if values and all(paths) else \
                    [layer.source() for layer in self.parameterAsLayerList(parameters, name, context)]
            elif kind == "file":
                params[name] = self.parameterAsFile(parameters, name, context) or None
            elif kind == "number":
                if not given and d.defaultValue() is None:
                    params[name] = None
                elif d.dataType() == QgsProcessingParameterNumber.Type.Integer:
                    params[name] = self.parameterAsInt(parameters, name, context)
                else:
                    params[name] = self.parameterAsDouble(parameters, name, context)
            elif kind == "distance":
                params[name] = self.parameterAsDouble(parameters, name, context)
            elif kind == "enum":
                if isinstance(d, OptionOrIndex) and given:
                    params[name] = d.option(parameters.get(name))
                else:
                    params[name] = (self.parameterAsEnumString(parameters, name, context) if d.usesStaticStrings()
                                    else d.options()[self.parameterAsEnum(parameters, name, context)])
            elif kind in ("string", "field"):
                params[name] = self.parameterAsString(parameters, name, context)
            elif kind == "datetime":  # a date widget; the engine gets ISO text (YYYY-MM-DD)
                date = as_date(parameters.get(name)) if given else None
                if given and (date is None or not date.isValid()):
                    raise QgsProcessingException(f"{name} must be a date, YYYY-MM-DD")
                params[name] = date.toString("yyyy-MM-dd") if date is not None else None
            elif kind == "boolean":
                params[name] = self.parameterAsBool(parameters, name, context)
            elif kind in ("rasterDestination", "vectorDestination"):
                params[name] = self.parameterAsOutputLayer(parameters, name, context) or None
            elif kind in ("fileDestination", "folderDestination"):
                params[name] = self.parameterAsFileOutput(parameters, name, context) or None
            elif kind == "sink":
                if (name in parameters and parameters[name] is None) or \
                        (d.flags() & QgsProcessingParameterDefinition.Flag.FlagOptional and parameters.get(name) in (None, "")):
                    continue  # an optional sink the user skipped
                tmp = QgsProcessingUtils.generateTempFilename(f"{name.lower()}.gpkg")
                temporary.append(tmp)
                params[name] = sinks[name] = tmp
            else:
                params[name] = parameters.get(name)
        return params, sinks

    def export_source(self, source, name, context, feedback, temporary) -> str:
        """Any feature source (a layer, its selection, a memory layer, a CSV) as a GeoPackage
        the engine can read, in the source's CRS."""
        path = QgsProcessingUtils.generateTempFilename(f"{name.lower()}.gpkg")
        temporary.append(path)
        options = QgsVectorFileWriter.SaveVectorOptions()
        options.driverName = "GPKG"
        options.layerName = name.lower()
        fields = QgsFields()
        for f in source.fields():
            if f.name().lower() != "fid":  # the GeoPackage makes its own
                fields.append(f)
        writer = QgsVectorFileWriter.create(path, fields, source.wkbType(), source.sourceCrs(),
                                            context.transformContext(), options)
        if writer.hasError() != QgsVectorFileWriter.WriterError.NoError:
            raise QgsProcessingException(f"{name}: cannot export the layer for the engine: {writer.errorMessage()}")
        for feat in source.getFeatures():
            if feedback is not None and feedback.isCanceled():
                raise QgsProcessingException("Cancelled: no output was written.")
            out = QgsFeature(fields)
            out.setAttributes([feat[f.name()] for f in fields])
            out.setGeometry(feat.geometry())
            writer.addFeature(out, QgsFeatureSink.Flag.FastInsert)
        del writer
        return f"{path}|layername={name.lower()}"

    def copy_to_sink(self, parameters, name, context, path) -> str:
        """The engine's GeoPackage into the sink the user chose (file, memory, ...)."""
        layer = QgsVectorLayer(path, name, "ogr")
        if not layer.isValid():
            raise QgsProcessingException(f"{name}: the engine's output {path} cannot be read")
        fields = QgsFields()
        keep = []
        for i, f in enumerate(layer.fields()):
            if f.name().lower() != "fid":
                fields.append(f)
                keep.append(i)
        sink, dest = self.parameterAsSink(parameters, name, context, fields, layer.wkbType(), layer.crs())
        if sink is None:
            raise QgsProcessingException(f"{name}: cannot create the output")
        for feat in layer.getFeatures():
            out = QgsFeature(fields)
            attrs = feat.attributes()
            out.setAttributes([attrs[i] for i in keep])
            if feat.hasGeometry():
                out.setGeometry(feat.geometry())
            if not sink.addFeature(out, QgsFeatureSink.Flag.FastInsert):
                raise QgsProcessingException(f"{name}: could not write a feature: {sink.lastError()}")
        del sink, layer
        path_out = str(dest).split("|")[0]
        if path_out.lower().endswith(".csv") and os.path.isfile(path_out):
            write_csvt(path_out, fields)
        return dest

    def load_on_completion(self, context, path, name, output_name, qml=None, group=None, rank=0, opacity=None):
        """Load a file output into the project when the algorithm finishes (style and place it)."""
        details = QgsProcessingContext.LayerDetails(name, context.project(), output_name, layer_hint(path))
        if qml or group:
            place(details, qml, group, rank, opacity)
        context.addLayerToLoadOnCompletion(str(path), details)

    def subject(self, parameters, context, name) -> str:
        """What a run worked on, for its group's name: the layer's name, else the file's."""
        value = parameters.get(name)
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if hasattr(value, "source") and hasattr(value.source, "staticValue"):  # selected features
            value = value.source.staticValue()
        layer = None
        if isinstance(value, QgsMapLayer):
            layer = value
        elif isinstance(value, str) and context.project() is not None:
            layer = context.project().mapLayer(value)
        if layer is not None:
            return layer.name()
        path = file_path(value)
        return Path(path.split("|")[0]).stem if path else name.lower()
