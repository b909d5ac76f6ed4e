"""The imagery steps as the engine runs them for QGIS and the command line."""
from glacier_mapper_plugin.core.progress import Progress


def test_acquisition_rows_join_back_to_an_rgi7_inventory(served_archive, tmp_path):
    """An inventory laid out as RGI 7.0 (rgi_id, glac_name, src_date) with ID_FIELD empty:
    chips are named by rgi_id, and the table carries rgi_id and glac_name under their own
    names, so it joins to the outlines in QGIS."""
    from glacier_mapper_plugin.core.vector import VectorLayer, read_layer, write_gpkg
    from glacier_mapper_plugin.core.vector import read_layer as read
    from glacier_mapper_plugin.engine.steps import STEPS
    region = served_archive["region"]
    src = read_layer(region.inventory, "inventory")
    ids = [f"RGI2000-v7.0-G-11-{90000 + k:05d}" for k in range(len(src.records))]
    records = [dict(rgi_id=i, glac_name=f"Ferner {k}", src_date="2003-07-30T00:00:00") for k, i in enumerate(ids)]
    inv = write_gpkg(tmp_path / "rgi7.gpkg", [VectorLayer("rgi7", src.crs, src.geometries, records,
                                                           {"rgi_id": str, "glac_name": str, "src_date": str})])
    out = STEPS["acquire_imagery"](dict(INVENTORY=f"{inv}|layername=rgi7", DATE="2023-09-01",
                                        STAC_URL=served_archive["api"].url, BUFFER_M=200.0, DEM=str(region.dem),
                                        OUTPUT_FOLDER=str(tmp_path / "chips"), OUTPUT=str(tmp_path / "acq.gpkg")),
                                   Progress())
    rows = read(tmp_path / "acq.gpkg").records
    assert [r["rgi_id"] for r in rows] == ids and [r["glac_name"] for r in rows] == [f"Ferner {k}" for k in range(len(ids))]
    assert sorted(p.split("/")[-1] for p in out["FILES"]) == sorted(f"{i}.tif" for i in ids)
