"""The `glacier_mapper` Processing provider. It loads without the engine: each algorithm
says how to install the engine when it is missing (glacier_mapper:install_engine)."""
from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import ALGORITHMS

ICON = Path(__file__).resolve().parent / "resources" / "icon.svg"


class GlacierMapperProvider(QgsProcessingProvider):
    def id(self):
        return "glacier_mapper"

    def name(self):
        return "Glacier Mapper"

    def longName(self):  # noqa: N802 (QGIS API name)
        return "Glacier Mapper: glacier outlines and area change from Sentinel-2"

    def icon(self):
        return QIcon(str(ICON))

    def svgIconPath(self):  # noqa: N802 (QGIS API name)
        return str(ICON)

    def loadAlgorithms(self):  # noqa: N802 (QGIS API name)
        for cls in ALGORITHMS:
            self.addAlgorithm(cls())
