import datetime as dt

import pytest

from glacier_mapper_plugin.core.massbalance.stakes import (Observation, observations_from_rows, parse_date,
                                               read_observations)

ROW = dict(POINT_ID="s1", POINT_LAT="46.8", POINT_LON="10.7", POINT_ELEVATION="3000",
           FROM_DATE="20150930", TO_DATE="20160929", POINT_BALANCE="-1200", RGIId="RGI60-11.00897")


def test_dates():
    assert parse_date("20150930") == dt.date(2015, 9, 30)
    assert parse_date("2015-09-30") == dt.date(2015, 9, 30)
    assert parse_date("30/09/2015") == dt.date(2015, 9, 30)
    assert parse_date("20159999") is None and parse_date("") is None


def test_units_periods_and_dropped_rows():
    rows = [ROW, dict(ROW, FROM_DATE="19999999"), dict(ROW, POINT_BALANCE=""),
            dict(ROW, FROM_DATE="20151001", TO_DATE="20160430", BALANCE_CODE="BW", POINT_BALANCE="900")]
    obs, dropped = observations_from_rows(rows, units="mm")
    assert dropped == 2
    assert [o.period for o in obs] == ["annual", "winter"]
    assert obs[0].balance == pytest.approx(-1.2) and obs[1].balance == pytest.approx(0.9)
    assert obs[0].glacier == "RGI60-11.00897" and obs[0].year == 2016
    with pytest.raises(ValueError, match="UNITS"):
        observations_from_rows(rows, units="cm")
    with pytest.raises(ValueError, match="POINT_BALANCE"):
        observations_from_rows([{"POINT_ID": "x"}])


def test_months_covered():
    o = Observation("g", "p", 0, 0, 0, dt.date(2015, 9, 17), dt.date(2016, 5, 20), 1.0, "winter")
    # 14 of September's 30 days: out; 20 of May's 31: in.
    assert o.months() == [(2015, 10), (2015, 11), (2015, 12), (2016, 1), (2016, 2),
                          (2016, 3), (2016, 4), (2016, 5)]
    o2 = Observation("g", "p", 0, 0, 0, dt.date(2015, 9, 20), dt.date(2016, 5, 10), 1.0, "winter")
    assert o2.months()[0] == (2015, 10) and o2.months()[-1] == (2016, 4)


def test_iceland_files(shared_data):
    folder = shared_data / "mbm_iceland"
    stake, dropped = read_observations(folder / "iceland_stake_dataset.csv")
    wgms, dropped_w = read_observations(folder / "iceland_wgms_dataset.csv")
    assert {o.period for o in stake} == {"winter", "summer", "annual"}
    # The same stake year in both layouts: winter 2.07, summer -1.43, annual 0.64 m w.e.
    first = [o for o in stake if o.point_id == "hn14aa" and o.year == 1995 and o.period != "annual"]
    assert sorted(round(o.balance, 2) for o in first) == [-1.43, 2.07]
    w = [o for o in wgms if o.point_id == "hn14aa" and o.to_date == dt.date(1995, 5, 20)]
    assert w and w[0].balance == pytest.approx(2.07) and w[0].period == "winter"
    big, _ = read_observations(folder / "Iceland_Stake_WGMS.csv")
    assert len(big) > 2000 and all(-15 < o.balance < 15 for o in big)  # m w.e., not mm


def test_slash_dates_are_read_from_the_data_or_refused():
    from glacier_mapper_plugin.core.massbalance.stakes import observations_from_rows
    base = dict(POINT_ID="p", POINT_LAT=46.8, POINT_LON=10.8, POINT_ELEVATION=3000, POINT_BALANCE=-1.0, RGIId="G")
    day_first = [dict(base, FROM_DATE="30/09/2002", TO_DATE="30/09/2003")]
    obs, _ = observations_from_rows(day_first)
    assert obs[0].from_date == __import__("datetime").date(2002, 9, 30)
    month_first = [dict(base, FROM_DATE="09/30/2002", TO_DATE="09/30/2003")]
    assert observations_from_rows(month_first)[0][0].to_date.month == 9
    ambiguous = [dict(base, FROM_DATE="01/10/2002", TO_DATE="01/09/2003")]
    with pytest.raises(ValueError, match="FROM_DATE/TO_DATE: dates such as 01/10/YYYY .*YYYY-MM-DD"):
        observations_from_rows(ambiguous)


def test_balances_1000_times_off_their_unit_are_refused():
    from glacier_mapper_plugin.core.massbalance.stakes import observations_from_rows
    rows = [dict(POINT_ID=str(i), POINT_LAT=46.8, POINT_LON=10.8, POINT_ELEVATION=3000, FROM_DATE="20021001",
                 TO_DATE="20030930", POINT_BALANCE=-1500 + 10 * i, RGIId="G") for i in range(10)]
    with pytest.raises(ValueError, match="look like mm w.e. .*set UNITS=mm"):
        observations_from_rows(rows, "m")
    assert len(observations_from_rows(rows, "mm")[0]) == 10
    small = [dict(r, POINT_BALANCE=-1.5 + 0.01 * i) for i, r in enumerate(rows)]
    with pytest.raises(ValueError, match="look like m w.e. .*set UNITS=m"):
        observations_from_rows(small, "mm")


def test_peer_check_against_the_mass_balance_machine(shared_data):
    """The Mass Balance Machine converts its Iceland stake table (iceland_stake_dataset.csv,
    ODINN-SciML/MassBalanceMachine notebooks/example_data/iceland) to 57 WGMS rows
    (iceland_wgms_dataset.csv), 55 of them with a balance. Our reader of the stake table gives
    the same 55 observations, compared one by one: stake, dates, balance, position."""
    import csv
    folder = shared_data / "mbm_iceland"
    ours, _ = read_observations(folder / "iceland_stake_dataset.csv")
    with open(folder / "iceland_wgms_dataset.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 57
    day = lambda text: dt.datetime.strptime(text, "%Y%m%d").date()  # noqa: E731
    theirs = {(r["POINT_ID"], day(r["FROM_DATE"]), day(r["TO_DATE"])): r for r in rows
              if r["POINT_BALANCE"] not in ("", "nan", "NaN")}
    mine = {(o.point_id, o.from_date, o.to_date): o for o in ours}
    assert len(theirs) == 55 and set(mine) == set(theirs)
    for key, r in theirs.items():
        o = mine[key]
        assert o.balance == pytest.approx(float(r["POINT_BALANCE"]), abs=1e-9), key
        assert (o.lat, o.lon, o.elevation) == pytest.approx(
            (float(r["POINT_LAT"]), float(r["POINT_LON"]), float(r["POINT_ELEVATION"])), abs=1e-9), key
