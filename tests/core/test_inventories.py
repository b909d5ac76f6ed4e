"""Published inventories' ids and dates (values copied from the real Hintereisferner rows of
RGI 7.0 and RGI 6.0 in shared/data/oggm_hef, OGGM's sample data)."""
import math

import pytest

from glacier_mapper_plugin.core.inventories import DATE_COLUMNS, ID_COLUMNS, find_column, inventory_date

RGI7_COLUMNS = ["rgi_id", "o1region", "o2region", "glims_id", "anlys_id", "subm_id", "src_date", "glac_name"]
RGI6_COLUMNS = ["RGIId", "GLIMSId", "BgnDate", "EndDate", "CenLon", "CenLat", "Name"]
GLIMS_COLUMNS = ["line_type", "anlys_id", "glac_id", "anlys_time", "src_date", "glac_name"]


@pytest.mark.parametrize("names, id_column, date_column", [
    (RGI7_COLUMNS, "rgi_id", "src_date"), (RGI6_COLUMNS, "RGIId", "BgnDate"), (GLIMS_COLUMNS, "glac_id", "src_date"),
    (["RGIID", "bgndate"], "RGIID", "bgndate"), (["fid", "area"], None, None)])
def test_published_id_and_date_columns_are_found(names, id_column, date_column):
    assert (find_column(names, ID_COLUMNS) or (None,))[0] == id_column
    assert (find_column(names, DATE_COLUMNS) or (None,))[0] == date_column


@pytest.mark.parametrize("value, year, how", [
    ("2003-07-30T00:00:00", 2003 + 210 / 365, "date"),               # RGI 7 src_date
    ("20030799", 2003 + (181 + 15.5) / 365, "day unknown"),           # RGI 6 BgnDate
    ("20039999", 2003.5, "month and day unknown"),
    ("20030815", 2003 + 226 / 365, "date"),
    ("2003", 2003.5, "a year alone"), (2003, 2003.5, "a year alone"),
    ("2015-08-28", 2015 + 239 / 365, "date"),
])
def test_partial_dates_are_read_as_what_they_are(value, year, how):
    got, said = inventory_date(value)
    assert got == pytest.approx(year, abs=1e-9) and said.startswith(how)


@pytest.mark.parametrize("value", [-9999999, "-9999999", 99999999, "", None, "July"])
def test_unknown_dates_are_no_year(value):
    assert math.isnan(inventory_date(value)[0])


def _glims(shared_data, tmp_path, analysis=None):
    from glacier_mapper_plugin.core.inventories import glims_outlines
    from glacier_mapper_plugin.core.vector import read_layer
    from tests.published import glims_extract
    layer = read_layer(glims_extract(shared_data, tmp_path))
    return layer, glims_outlines(layer.geometries, layer.records, analysis)


def test_glims_outline_is_glac_bound_minus_internal_rock(shared_data, tmp_path):
    """The GLIMS form of RGI 7.0's Hintereisferner (tests/published.glims_extract): glac_bound
    minus its five intrnl_rock polygons, the debris-covered tongue kept, is RGI 7's polygon
    with its five holes, and the newest analysis is the one chosen."""
    from shapely import force_2d

    from glacier_mapper_plugin.core.vector import read_layer
    rgi7 = force_2d(read_layer(shared_data / "oggm_hef" / "rgi7g_hef.shp").geometries[0])
    layer, (geoms, records, report) = _glims(shared_data, tmp_path)
    assert len(layer.records) == 8 and len(geoms) == 1
    assert records[0]["src_date"].startswith("2003-07-30") and records[0]["line_type"] == "glac_bound"
    assert geoms[0].symmetric_difference(rgi7).area < 1e-9 * rgi7.area
    assert sum(len(p.interiors) for p in getattr(geoms[0], "geoms", [geoms[0]])) == 5
    assert "minus 5 intrnl_rock, 1 debris_cov kept as glacier" in report[0] and "the newest" in report[0]


def test_glims_analyses_told_apart_by_date(shared_data, tmp_path):
    from glacier_mapper_plugin.core.inventories import GLIMS_ANALYSIS_ID
    from glacier_mapper_plugin.core.vector import read_layer
    rgi6 = read_layer(shared_data / "oggm_hef" / "Hintereisferner_RGI6.shp").geometries[0]
    _, (geoms, records, _) = _glims(shared_data, tmp_path, "2003-07-01")  # 14 days from the older, 29 from the newer
    assert records[0]["src_date"].startswith("2003-07-15") and geoms[0].symmetric_difference(rgi6).area < 1e-12
    _, (geoms, records, report) = _glims(shared_data, tmp_path, "all")
    assert [r[GLIMS_ANALYSIS_ID] for r in records] == ["G010752E46802N@2003-07-15", "G010752E46802N@2003-07-30"]
    with pytest.raises(ValueError, match="GLIMS_ANALYSIS"):
        _glims(shared_data, tmp_path, "latest please")
