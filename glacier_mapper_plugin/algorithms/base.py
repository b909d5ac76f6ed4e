"""What every Glacier Mapper algorithm shares: names, help, dependency checks, and the
bridge from core progress/cancellation to QgsProcessingFeedback."""
from __future__ import annotations

import collections

from pathlib import Path

from qgis.core import (QgsProcessing, QgsProcessingAlgorithm, QgsProcessingContext, QgsProcessingException,
                       QgsProcessingParameterFeatureSource, QgsProcessingParameterField,
                       QgsProcessingLayerPostProcessorInterface)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from .. import dependencies
from ..core.progress import Cancelled, Progress

PLUGIN_DIR = Path(__file__).resolve().parent.parent
STYLES = PLUGIN_DIR / "resources" / "styles"
HELP_URL = "https://github.com/glacier-mapper/glacier-mapper#algorithms"


class FeedbackProgress(Progress):
    """Core progress that forwards to QgsProcessingFeedback and reads its cancel flag."""

    def __init__(self, feedback):
        super().__init__()
        self.feedback = feedback

    def update(self, fraction, message=None):
        if self.feedback is not None:
            self.feedback.setProgress(100.0 * min(max(fraction, 0.0), 1.0))
        super().update(fraction, message)

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

    def is_cancelled(self):
        return self.feedback is not None and self.feedback.isCanceled()


class StyleOnLoad(QgsProcessingLayerPostProcessorInterface):
    """Applies a QML style from resources/styles when an output loads into the project."""

    def __init__(self, qml: str):
        super().__init__()
        self.qml = str(STYLES / qml)

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API name)
        if layer is not None and layer.isValid():
            layer.loadNamedStyle(self.qml)
            layer.triggerRepaint()


# QGIS takes ownership of a post-processor and runs a *clone* of the algorithm: a Python
# reference must keep each new post-processor's wrapper alive until QGIS has used it (the
# pattern of the PyQGIS cookbook); QGIS deletes the C++ side, so each load gets a new one.
_LIVE_STYLERS: collections.deque = collections.deque(maxlen=512)


def styler(qml: str) -> StyleOnLoad:
    post = StyleOnLoad(qml)
    _LIVE_STYLERS.append(post)
    return post


def style_output(context, path, qml: str) -> None:
    """Style a destination output that QGIS will load when the algorithm completes."""
    if path and context.willLoadLayerOnCompletion(path):
        context.layerToLoadOnCompletionDetails(path).setPostProcessor(styler(qml))


class GlacierMapperAlgorithm(QgsProcessingAlgorithm):
    """Subclasses set ALG_ID, DISPLAY, GROUP/GROUP_ID, HELP, PARAM_HELP and REQUIRES and
    implement initAlgorithm and execute()."""

    ALG_ID = ""
    DISPLAY = ""
    GROUP = ""
    GROUP_ID = ""
    HELP = ""
    PARAM_HELP: dict[str, str] = {}
    REQUIRES: tuple[str, ...] = ()  # import names of optional dependencies

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
        lines = [self.tr(self.HELP), "", "<b>Parameters</b>"]
        lines += [f"<b>{name}</b>: {self.tr(text)}" for name, text in self.PARAM_HELP.items()]
        return "<br>".join(lines)

    def createInstance(self):  # noqa: N802 (QGIS API name)
        return type(self)()

    def addParameter(self, parameter, createOutput=True):  # noqa: N802,N803 (QGIS API name)
        text = self.PARAM_HELP.get(parameter.name())
        if text and hasattr(parameter, "setHelp"):
            parameter.setHelp(self.tr(text))
        return super().addParameter(parameter, createOutput)

    def add_inventory_parameters(self):
        """INVENTORY (glacier polygons, any CRS) and ID_FIELD, as every inventory-driven
        algorithm names them."""
        self.addParameter(QgsProcessingParameterFeatureSource("INVENTORY", "Inventory", [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterField("ID_FIELD", "Glacier id field", parentLayerParameterName="INVENTORY",
                                                      optional=True))

    def missing_dependencies(self) -> list[str]:
        dependencies.add_to_sys_path()
        return dependencies.missing_modules(self.REQUIRES) if self.REQUIRES else []

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API name)
        missing = self.missing_dependencies()
        if missing:
            return False, (f"{self.displayName()} needs {', '.join(missing)}. "
                           + dependencies.install_hint())
        return super().checkParameterValues(parameters, context)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        missing = self.missing_dependencies()
        if missing:
            raise QgsProcessingException(f"{self.displayName()} needs {', '.join(missing)}. "
                                         + dependencies.install_hint())
        progress = FeedbackProgress(feedback)
        try:
            results = self.execute(parameters, context, feedback, progress)
            # numpy scalars do not survive QVariant (qgis_process --json would print "").
            return {k: (v.item() if hasattr(v, "item") else v) for k, v in results.items()}
        except Cancelled:
            raise QgsProcessingException("Cancelled: no output was written.") from None
        except (ValueError, FileNotFoundError) as err:
            raise QgsProcessingException(str(err)) from err

    def load_on_completion(self, context, path, name, output_name, qml=None):
        """Load a file output into the project when the algorithm finishes (and style it)."""
        details = QgsProcessingContext.LayerDetails(name, context.project(), output_name)
        if qml:
            details.setPostProcessor(styler(qml))
        context.addLayerToLoadOnCompletion(str(path), details)
