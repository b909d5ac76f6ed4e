import datetime as dt

from pyproj import CRS
from shapely.geometry import box

from glacier_mapper_plugin.core.vector import VectorLayer, read_layer, write_gpkg


def test_gpkg_round_trip(tmp_path):
    layer = VectorLayer("glaciers", "EPSG:32632", [box(0, 0, 10, 10), box(20, 0, 30, 5)],
                        [dict(id="A", area_km2=1e-4, date=dt.date(2015, 8, 1), kept=True, n=3),
                         dict(id="B", area_km2=5e-5, date=dt.date(2015, 8, 2), kept=False, n=None)])
    path = write_gpkg(tmp_path / "g.gpkg", [layer])
    back = read_layer(path, "glaciers")
    assert [r["id"] for r in back.records] == ["A", "B"]
    assert back.records[0]["date"] == dt.date(2015, 8, 1)  # dates stay dates
    assert back.records[1]["n"] is None and back.records[0]["kept"] is True
    assert back.geometries[1].area == 50
    assert CRS.from_wkt(back.crs).to_epsg() == 32632
