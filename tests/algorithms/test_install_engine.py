"""glacier_mapper:install_engine through processing.run: the installer QGIS users run."""
import json
import os
from pathlib import Path

import pytest
from qgis.core import QgsProcessingException

from tests.conftest import ENGINE_PYTHON


def test_install_engine_checks_and_records_an_existing_environment(processing, tmp_path, monkeypatch):
    """Pointed at this checkout's engine (up to date): it only checks that the engine starts,
    and records it in the profile, where the algorithms then find it."""
    import glacier_mapper_plugin.algorithms.base as base
    from glacier_mapper_plugin.algorithms import install_engine
    profile = tmp_path / "profile"
    monkeypatch.setattr(base, "profile_dir", lambda: profile)
    monkeypatch.setattr(install_engine, "profile_dir", lambda: profile)
    monkeypatch.delenv("GLACIER_MAPPER_ENGINE", raising=False)
    res = processing.run("glacier_mapper:install_engine", {"ENGINE_FOLDER": str(ENGINE_PYTHON.parent.parent)})
    record = json.loads((profile / "python" / "glacier_mapper_engine.json").read_text())
    assert Path(record["python"]) == ENGINE_PYTHON and res["ENGINE_PYTHON"] == str(ENGINE_PYTHON)


def test_offline_install_without_the_wheels_is_a_clear_error(processing, tmp_path, monkeypatch):
    import glacier_mapper_plugin.algorithms.base as base
    from glacier_mapper_plugin.algorithms import install_engine
    profile = tmp_path / "profile"
    monkeypatch.setattr(base, "profile_dir", lambda: profile)
    monkeypatch.setattr(install_engine, "profile_dir", lambda: profile)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with pytest.raises(QgsProcessingException, match="Installing the engine failed: pip failed"):
        processing.run("glacier_mapper:install_engine", {"ENGINE_FOLDER": str(tmp_path / "env"),
                                                         "WHEELHOUSE": str(wheels)})
    assert not (profile / "python" / "glacier_mapper_engine.json").exists()  # nothing recorded
