import sys

from glacier_mapper_plugin import dependencies


def test_folder_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(dependencies.ENV_VAR, str(tmp_path))
    assert dependencies.deps_dir() == tmp_path


def test_default_folder_is_per_profile_and_python(monkeypatch, tmp_path):
    monkeypatch.delenv(dependencies.ENV_VAR, raising=False)
    path = dependencies.deps_dir(tmp_path / "profiles" / "default")
    assert path == tmp_path / "profiles" / "default" / "python" / "glacier_mapper_deps" / dependencies.python_tag()


def test_added_first_on_sys_path_once(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "path", list(sys.path))
    dependencies.add_to_sys_path(tmp_path)
    dependencies.add_to_sys_path(tmp_path)
    assert sys.path[0] == str(tmp_path) and sys.path.count(str(tmp_path)) == 1


def test_missing_module_reported_with_install_hint():
    assert dependencies.missing_modules(["surely_not_a_module_xyz"]) == ["surely_not_a_module_xyz"]
    assert dependencies.missing_modules(["numpy"]) == []
    hint = dependencies.install_hint()
    assert "glacier_mapper_plugin.dependencies install" in hint and "restart QGIS" in hint


def test_constraints_pin_what_qgis_ships():
    pins = dependencies.shipped_constraints()
    assert "numpy<2" in pins
    import numpy
    assert f"numpy=={numpy.__version__}" in pins


def test_installed_folder_holds_no_second_numpy():
    """The installed dependency folder must leave numpy (and GDAL's friends) to QGIS."""
    folder = dependencies.deps_dir()
    assert (folder / "torch").is_dir(), f"run make setup: {folder} has no torch"
    for shipped in ("numpy", "shapely", "rasterio", "osgeo", "scipy"):
        assert not (folder / shipped).exists(), f"{shipped} shadows QGIS's own in {folder}"


def test_prune_removes_shipped_distribution(tmp_path):
    pkg = tmp_path / "numpy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    info = tmp_path / "numpy-1.24.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: numpy\nVersion: 1.24.2\n")
    (info / "RECORD").write_text("numpy/__init__.py,,\nnumpy-1.24.2.dist-info/METADATA,,\n"
                                 "numpy-1.24.2.dist-info/RECORD,,\n")
    (tmp_path / "keep.py").write_text("")
    assert dependencies._prune_shipped(tmp_path) == ["numpy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.py"]
