"""The QGIS side of the engine (engine/client.py, standard library only) against a real
engine process: the job protocol, reuse, cancel, a killed engine, a missing engine."""
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import rasterio

from glacier_mapper_plugin.engine import client


class Listener:
    def __init__(self, cancel_after=None):
        self.messages, self.fractions, self.warnings = [], [], []
        self.cancel_after = cancel_after
        self.started = time.monotonic()

    def progress(self, f):
        self.fractions.append(f)

    def info(self, m):
        self.messages.append(m)

    def warning(self, m):
        self.warnings.append(m)

    def debug(self, m):
        pass

    def cancelled(self):
        return self.cancel_after is not None and time.monotonic() - self.started > self.cancel_after


@pytest.fixture()
def engine_python(monkeypatch):
    monkeypatch.setenv(client.ENV_VAR, sys.executable)
    yield Path(sys.executable)
    client.POOL.close()


def test_engine_is_found_from_the_profile_record(tmp_path, monkeypatch):
    monkeypatch.delenv(client.ENV_VAR, raising=False)
    profile = tmp_path / "profile"
    with pytest.raises(client.EngineMissing, match="install_engine") as missing:
        client.engine_python(profile)
    import re
    said = str(missing.value)
    assert said.startswith("Glacier Mapper's engine") and said.endswith(".")
    assert re.search(r"\.\s+[A-Z]", said) is None  # one sentence (issue 25: first run)
    (profile / "python").mkdir(parents=True)
    (profile / "python" / client.CONFIG_NAME).write_text(json.dumps({"python": sys.executable}))
    assert client.engine_python(profile) == Path(sys.executable)
    monkeypatch.setenv(client.ENV_VAR, str(Path(sys.executable).parent.parent))  # a venv folder
    assert client.engine_python(None).parent == Path(sys.executable).parent


def test_a_job_runs_and_the_engine_is_reused(engine_python, tmp_path):
    listener = Listener()
    out = client.run_step("synthetic_region", {"OUTPUT_FOLDER": str(tmp_path / "r"), "SIZE_KM": 2.0,
                                               "N_GLACIERS": 2, "SEED": 3}, listener)
    assert Path(out["IMAGERY_END"]).is_file() and out["GLACIER_COUNT"] >= 1
    assert listener.fractions and listener.fractions[-1] == pytest.approx(1.0)
    assert any("peak memory" in m for m in listener.messages)
    engine = client.POOL.idle[str(engine_python)][0]
    pid = engine.proc.pid
    # A refused job (clear error naming the parameter) leaves the engine usable.
    with pytest.raises(client.EngineError, match="DATE must be YYYY-MM-DD"):
        client.run_step("acquire_imagery", {"INVENTORY": out["INVENTORY"], "DATE": "1 Sept",
                                            "OUTPUT_FOLDER": str(tmp_path / "a")}, Listener())
    client.run_step("synthetic_region", {"OUTPUT_FOLDER": str(tmp_path / "r2"), "SIZE_KM": 1.0,
                                         "N_GLACIERS": 1, "SEED": 3}, Listener())
    assert client.POOL.idle[str(engine_python)][0].proc.pid == pid  # one engine for the session


def test_cancel_stops_the_engine_and_leaves_no_file(engine_python, tmp_path):
    listener = Listener(cancel_after=1.5)
    folder = tmp_path / "big"
    t0 = time.monotonic()
    with pytest.raises(client.EngineCancelled):
        client.run_step("synthetic_region", {"OUTPUT_FOLDER": str(folder), "SIZE_KM": 30.0,
                                             "N_GLACIERS": 50}, listener)
    assert time.monotonic() - t0 < 12
    leftovers = [p.name for p in folder.rglob("*")] if folder.exists() else []
    assert not [n for n in leftovers if "partial" in n], leftovers
    assert not client.POOL.idle.get(str(engine_python))


def test_a_killed_engine_is_a_clear_error(engine_python, tmp_path):
    listener = Listener()

    def kill_soon():
        time.sleep(1.5)
        for engines in client.POOL.idle.values():
            assert not engines  # the running engine is not idle
        os.kill(running[0].proc.pid, signal.SIGKILL)

    running = []
    original = client._Pool.take

    def take(self, python):
        engine = original(self, python)
        running.append(engine)
        return engine

    client._Pool.take = take
    try:
        threading.Thread(target=kill_soon, daemon=True).start()
        with pytest.raises(client.EngineError, match="killed \\(SIGKILL\\), most likely by the system's out-of-memory"):
            client.run_step("synthetic_region", {"OUTPUT_FOLDER": str(tmp_path / "k"), "SIZE_KM": 30.0,
                                                 "N_GLACIERS": 50}, listener)
    finally:
        client._Pool.take = original
    assert not [p for p in (tmp_path / "k").rglob("*.tif")] if (tmp_path / "k").exists() else True


def test_engine_written_tables_keep_numbers(engine_python, tmp_path, served_archive):
    """Sinks leave the engine as GeoPackages whose numeric columns are numeric."""
    region = served_archive["region"]
    out = client.run_step("acquire_imagery", {
        "INVENTORY": f"{region.inventory}|layername=inventory", "ID_FIELD": "id", "DATE": "2023-09-01",
        "STAC_URL": served_archive["api"].url, "BUFFER_M": 100, "DEM": str(region.dem),
        "OUTPUT_FOLDER": str(tmp_path / "chips"), "OUTPUT": str(tmp_path / "table.gpkg")}, Listener())
    import pyogrio
    meta = pyogrio.read_info(out["OUTPUT"])
    types = dict(zip(meta["fields"], meta["dtypes"]))
    assert types["cloud_pct"] == "float64" and types["candidates"] == "int64" and types["status"] == "object"
    with rasterio.open(out["FILES"][0]) as src:
        assert src.count == 7


def test_a_broken_engine_says_why_and_how_to_repair_it(tmp_path, monkeypatch):
    """An engine whose environment lacks a package (an install half done, a package removed):
    one sentence naming the error and install_engine, the engine's own lines after it (the
    stand-in engine is a POSIX shell script, as the suite runs on Linux)."""
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import torch_is_not_installed_here'\n")
    fake.chmod(0o755)
    monkeypatch.setenv(client.ENV_VAR, str(fake))
    try:
        with pytest.raises(client.EngineError) as err:
            client.run_step("synthetic_region", {"OUTPUT_FOLDER": str(tmp_path / "r")}, Listener())
    finally:
        client.POOL.close()
    first = str(err.value).splitlines()[0]
    assert first == (f"Glacier Mapper's engine ({fake}) does not start (ModuleNotFoundError: No module named "
                     "'torch_is_not_installed_here'): run Processing Toolbox > Glacier Mapper > Set-up > Install "
                     "engine (glacier_mapper:install_engine) again to repair it.")
    assert "Engine log:" in str(err.value) and not (tmp_path / "r").exists()
