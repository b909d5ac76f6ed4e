"""WGMS records (glacier-wide and band layouts) in m or mm w.e.: the same truth in either
unit with the matching UNITS gives the same observations; a unit 1000 x off is refused."""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from glacier_mapper_plugin.core.massbalance.wgms import records_from_table


def _rows(values, scale, band=False):
    rows = []
    for i, v in enumerate(values):
        row = dict(YEAR=str(1990 + i), RGI_ID="RGI60-11.00897", ANNUAL_BALANCE=repr(v * scale))
        if band:
            row.update(LOWER_BOUND="2500", UPPER_BOUND="2550")
        rows.append(row)
    return rows


def _read(rows, units):
    return records_from_table(rows, units, lambda r: r["RGI_ID"], lambda g: (10.76, 46.80, "north"))[0]


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(-9.0, 3.0, allow_nan=False), min_size=5, max_size=25), band=st.booleans())
def test_m_and_mm_with_the_matching_units_are_the_same_records(values, band):
    assume(np.percentile(np.abs(values), 95) >= 0.05)  # a real series: not all within 5 cm w.e.
    in_m, in_mm = _read(_rows(values, 1.0, band), "m"), _read(_rows(values, 1000.0, band), "mm")
    assert [o.balance for o in in_m] == pytest.approx([o.balance for o in in_mm], abs=1e-9)
    assert [(o.point_id, o.from_date, o.to_date, o.period) for o in in_m] == \
        [(o.point_id, o.from_date, o.to_date, o.period) for o in in_mm]


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(-9.0, 3.0, allow_nan=False), min_size=5, max_size=25), band=st.booleans())
def test_mm_read_as_m_is_refused_naming_units(values, band):
    """Balances in mm w.e. declared as m: refused whenever they could not be metres (95th
    percentile of |b| above 12 m w.e.), naming UNITS and the unit they look like."""
    typical = np.percentile(np.abs(values), 95) * 1000
    if typical > 12:
        with pytest.raises(ValueError, match="UNITS=m.*look like mm w.e.*set UNITS=mm"):
            _read(_rows(values, 1000.0, band), "m")
    else:
        _read(_rows(values, 1000.0, band), "m")  # within what a glacier can do in metres
