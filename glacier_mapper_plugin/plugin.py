"""QGIS entry point: registers the Processing provider; nothing here touches iface at import."""
from qgis.core import QgsApplication


class GlacierMapperPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None

    def initProcessing(self):  # noqa: N802 (QGIS API name)
        # Nothing is added to QGIS's sys.path: the algorithms run in the engine's own process.
        if QgsApplication.platform() == "qgis_process":
            # A headless run: QGIS loads raster parameters to validate them, and GDAL would
            # leave .aux.xml statistics beside the user's inputs. The process ends with the run.
            from osgeo import gdal
            gdal.SetConfigOption("GDAL_PAM_ENABLED", "NO")
        from .provider import GlacierMapperProvider
        self.provider = GlacierMapperProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 (QGIS API name)
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
