"""Glacier Mapper: glacier outlines and area change from Sentinel-2 in QGIS Processing."""


def classFactory(iface):  # noqa: N802 (QGIS API name)
    from .plugin import GlacierMapperPlugin
    return GlacierMapperPlugin(iface)
