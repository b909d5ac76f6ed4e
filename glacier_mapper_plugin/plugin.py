"""QGIS entry point: registers the Processing provider; nothing here touches iface at import."""
from qgis.core import QgsApplication

from . import dependencies


class GlacierMapperPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None

    def initProcessing(self):  # noqa: N802 (QGIS API name)
        # Dependencies first, so that algorithms can import torch when they run.
        dependencies.add_to_sys_path()
        from .provider import GlacierMapperProvider
        self.provider = GlacierMapperProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 (QGIS API name)
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
