"""The provider registered in pytest-qgis's QGIS application (the QGIS tier)."""
import pytest


@pytest.fixture(scope="session")
def provider(qgis_app, qgis_processing):
    from qgis.core import QgsApplication

    from glacier_mapper_plugin.provider import GlacierMapperProvider
    registry = QgsApplication.processingRegistry()
    existing = registry.providerById("glacier_mapper")
    if existing is not None:
        return existing
    prov = GlacierMapperProvider()
    assert registry.addProvider(prov)
    return prov


@pytest.fixture(scope="session")
def processing(provider):
    """QGIS's `processing` module (importable once pytest-qgis has set up Processing)."""
    import processing as qgis_processing_module
    return qgis_processing_module
