"""Each glacier its own file; outlines fingerprinted for resume."""
import pytest
from shapely.geometry import Polygon, box

from glacier_mapper_plugin.core.identity import file_names, fingerprint


def test_duplicate_ids_are_refused_with_the_offenders():
    with pytest.raises(ValueError, match=r"ID_FIELD: 1 glacier id\(s\) occur more than once in INVENTORY \('G2'\)"):
        file_names(["G1", "G2", "G2"])


def test_ids_that_collide_as_file_names_get_stable_suffixes():
    names = file_names(["RGI/1", "RGI_1", "RGI 1", "RGI60-11.00897"])
    assert len(set(names)) == 4 and names[3] == "RGI60-11.00897"
    assert all(n.startswith("RGI_1-") for n in names[:3])
    assert names == file_names(["RGI/1", "RGI_1", "RGI 1", "RGI60-11.00897"])  # stable across runs


def test_fingerprint_changes_with_the_outline_only():
    a = box(10.0, 46.0, 10.1, 46.1)
    assert fingerprint(a) == fingerprint(box(10.0, 46.0, 10.1, 46.1))
    assert fingerprint(a) != fingerprint(box(10.0, 46.0, 10.1, 46.2))
    assert fingerprint(None) == fingerprint(Polygon()) == "none"
