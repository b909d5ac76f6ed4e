"""Hydrological years and seasons on both sides of the equator."""
import datetime as dt

import pytest

from glacier_mapper_plugin.core.massbalance.seasons import (hemisphere, hydro_month, hydro_year_months, summer_months,
                                                winter_months)
from glacier_mapper_plugin.core.massbalance.stakes import _period_from_dates


def test_north_and_south_years():
    assert hydro_year_months(2003, "north")[0] == (2002, 10) and hydro_year_months(2003, "north")[-1] == (2003, 9)
    assert hydro_year_months(2003, "south")[0] == (2002, 4) and hydro_year_months(2003, "south")[-1] == (2003, 3)
    assert winter_months("north") == (10, 11, 12, 1, 2, 3, 4) and summer_months("north") == (5, 6, 7, 8, 9)
    assert winter_months("south") == (4, 5, 6, 7, 8, 9, 10) and summer_months("south") == (1, 2, 3, 11, 12)
    assert hydro_month(10, "north") == 0 == hydro_month(4, "south")  # the same season feature
    assert hemisphere(46.8) == "north" and hemisphere(-50.5) == "south" and hemisphere(-50.5, "north") == "north"
    with pytest.raises(ValueError, match="HEMISPHERE"):
        hemisphere(0.0, "east")


def test_seasonal_records_follow_the_hemisphere():
    # A record from May to October is summer in the Alps and winter in Patagonia.
    assert _period_from_dates(dt.date(2010, 5, 1), dt.date(2010, 10, 1), 46.8) == "summer"
    assert _period_from_dates(dt.date(2010, 5, 1), dt.date(2010, 10, 1), -50.0) == "winter"
    assert _period_from_dates(dt.date(2009, 4, 1), dt.date(2010, 3, 31), -50.0) == "annual"
