from qgis.core import QgsApplication

from glacier_mapper_plugin.algorithms import ALGORITHMS
from glacier_mapper_plugin.algorithms.base import STYLES


def test_provider_registers_every_algorithm(provider):
    ids = {alg.id() for alg in provider.algorithms()}
    assert ids == {f"glacier_mapper:{cls.ALG_ID}" for cls in ALGORITHMS}
    assert provider.id() == "glacier_mapper"
    assert not provider.icon().isNull()


def test_every_parameter_has_help_and_every_algorithm_a_group(provider):
    for alg in provider.algorithms():
        assert alg.group() and alg.groupId()
        assert len(alg.shortHelpString()) > 100
        for param in alg.parameterDefinitions():
            assert param.name() in alg.PARAM_HELP, f"{alg.id()}: {param.name()} has no help"
            assert param.help()


def test_styles_exist_and_parse():
    from qgis.PyQt.QtXml import QDomDocument
    qmls = list(STYLES.glob("*.qml"))
    assert qmls
    for qml in qmls:
        assert QDomDocument().setContent(qml.read_text())[0], qml


def test_missing_dependency_is_explained(provider, monkeypatch):
    from glacier_mapper_plugin.algorithms.synthetic_region import SyntheticRegionAlgorithm
    monkeypatch.setattr(SyntheticRegionAlgorithm, "REQUIRES", ("surely_not_a_module_xyz",))
    alg = QgsApplication.processingRegistry().createAlgorithmById("glacier_mapper:synthetic_region")
    ok, message = alg.checkParameterValues({}, None)
    assert not ok
    assert "surely_not_a_module_xyz" in message and "dependencies install" in message
