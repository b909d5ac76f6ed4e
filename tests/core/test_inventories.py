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
