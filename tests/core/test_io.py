import pytest

from glacier_mapper_plugin.core.io import atomic_output


def test_complete_file_appears_only_at_the_end(tmp_path):
    dest = tmp_path / "out.tif"
    with atomic_output(dest) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".tif" and tmp != dest
        tmp.write_text("data")
        assert not dest.exists()
    assert dest.read_text() == "data"
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_failure_leaves_nothing_and_keeps_previous(tmp_path):
    dest = tmp_path / "out.gpkg"
    dest.write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_output(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert dest.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.gpkg"]
