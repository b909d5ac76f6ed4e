from pathlib import Path

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


def test_partials_of_a_killed_writer_are_removed_once_the_output_is_complete(tmp_path):
    """A Dask worker killed mid-write leaves its temporary sibling; once the rerun wrote the
    output, remove_partials clears it (and only it)."""
    from glacier_mapper_plugin.core.io import partial_path, remove_partials
    out = tmp_path / "G[1].tif"
    out.write_bytes(b"done")
    left = [partial_path(out), Path(str(partial_path(out)) + ".aux.xml")]
    for p in left:
        p.write_bytes(b"half")
    other = partial_path(tmp_path / "G2.tif")
    other.write_bytes(b"still being written")
    assert remove_partials([out, None]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["G[1].tif", other.name])
