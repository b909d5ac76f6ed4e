from qgis.core import QgsApplication

from glacier_mapper_plugin.algorithms import ALGORITHMS
from glacier_mapper_plugin.algorithms.base import STYLES


def test_provider_registers_every_algorithm(provider):
    ids = {alg.id() for alg in provider.algorithms()}
    assert ids == {f"glacier_mapper:{cls.ALG_ID}" for cls in ALGORITHMS}
    assert provider.id() == "glacier_mapper"
    assert not provider.icon().isNull()


def test_every_parameter_has_help_and_every_algorithm_a_group(provider):
    from glacier_mapper_plugin.algorithms.base import SHARED_HELP
    for alg in provider.algorithms():
        assert alg.group() and alg.groupId()
        assert len(alg.shortHelpString()) > 100
        for param in alg.parameterDefinitions():
            assert param.name() in alg.PARAM_HELP or param.name() in SHARED_HELP, f"{alg.id()}: {param.name()} has no help"
            assert param.help()


def test_styles_exist_and_parse():
    from qgis.PyQt.QtXml import QDomDocument
    qmls = list(STYLES.glob("*.qml"))
    assert qmls
    for qml in qmls:
        assert QDomDocument().setContent(qml.read_text())[0], qml


def test_missing_engine_is_explained(provider, monkeypatch, tmp_path):
    monkeypatch.setenv("GLACIER_MAPPER_ENGINE", str(tmp_path / "no-such-python"))
    monkeypatch.setattr("glacier_mapper_plugin.algorithms.base.profile_dir", lambda: tmp_path / "profile")
    alg = QgsApplication.processingRegistry().createAlgorithmById("glacier_mapper:synthetic_region")
    ok, message = alg.checkParameterValues({"OUTPUT_FOLDER": str(tmp_path)}, None)
    assert not ok
    assert "engine" in message and "glacier_mapper:install_engine" in message
    install = QgsApplication.processingRegistry().createAlgorithmById("glacier_mapper:install_engine")
    assert install is not None


def test_command_line_parameters_match_the_algorithms(provider):
    """engine/parameters.json (what glacier-mapper offers without QGIS) is what QGIS declares;
    regenerate it with scripts/export_parameters.py after changing a parameter."""
    import json
    from pathlib import Path

    from scripts.export_parameters import CLI_NAMES, OUT, describe
    committed = {s["id"]: s for s in json.loads(Path(OUT).read_text())["steps"]}
    for alg in provider.algorithms():
        if alg.name() in CLI_NAMES:
            assert describe(alg) == committed[alg.name()], f"{alg.name()}: run scripts/export_parameters.py"


def test_qgis_never_imports_the_engine_packages(provider):
    """Loading the provider and every algorithm's definition pulls in none of the engine's
    packages (the desktop test checks the same after real runs)."""
    import sys
    for name in ("torch", "segmentation_models_pytorch", "xgboost", "pystac_client", "pyogrio", "dask"):
        assert name not in sys.modules, name


def test_help_is_escaped_html_with_labels_and_ids(provider):
    alg = QgsApplication.processingRegistry().createAlgorithmById("glacier_mapper:area_change")
    text = alg.shortHelpString()
    assert "recall &lt; MIN_RECALL" in text  # "<" survives the HTML help panel
    assert "<b>Minimum recall</b> (MIN_RECALL)" in text
    seg = QgsApplication.processingRegistry().createAlgorithmById("glacier_mapper:segment_glaciers")
    flags = {d.name(): bool(d.flags() & d.FlagAdvanced) for d in seg.parameterDefinitions()}
    assert flags["DEVICE"] and flags["TILE_SIZE"] and flags["PROBABILITY_FORMAT"]
    assert not flags["INPUT"] and not flags["MODEL"] and not flags["OUTPUT_PROBABILITY"]
    acq = QgsApplication.processingRegistry().createAlgorithmById("glacier_mapper:acquire_imagery")
    assert acq.parameterDefinition("DATE").type() == "datetime"


def test_secondary_outputs_are_optional_but_made_by_default(provider):
    """A user keeps the outputs that matter and may skip the rest (issue 25, item 6)."""
    from qgis.core import QgsProcessingParameterDefinition
    for alg_id, name in (("segment_glaciers", "OUTPUT_PROBABILITY"), ("segment_glaciers", "OUTPUT_MASK"),
                         ("train_mass_balance", "OUTPUT_METRICS"), ("area_change", "OUTPUT_SUMMARY")):
        d = provider.algorithm(alg_id).parameterDefinition(name)
        assert d.flags() & QgsProcessingParameterDefinition.Flag.FlagOptional, (alg_id, name)
        assert d.createByDefault(), (alg_id, name)
