import numpy as np
import pytest

from glacier_mapper_plugin.engine.steps.change import year_of


def test_unknown_rgi_dates_are_not_years():
    assert np.isnan(year_of(-9999999)) and np.isnan(year_of("-9999999")) and np.isnan(year_of(99999999))
    assert year_of("2015-08-28") == pytest.approx(2015.65, abs=0.01) and year_of(2003) == 2003
