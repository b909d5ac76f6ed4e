"""Inventories and mass-balance records in the forms they are published in, built from the real
files in shared/data (the test that uses each says which rows it rests on)."""
from pathlib import Path

import numpy as np

GLIMS_FIELDS = ("line_type", "anlys_id", "glac_id", "anlys_time", "src_date", "glac_name", "rec_status")


def glims_extract(shared_data: Path, folder: Path, name: str = "glims_polygons.shp") -> Path:
    """Hintereisferner as a GLIMS download (glims_polygons.shp: one row per polygon, its role in
    line_type), made from the real analyses behind the shared RGI files:
    - analysis 755531 of G010752E46802N (2003-07-30), the one RGI 7.0 took (rgi7g_hef.shp
      names glims_id, anlys_id and src_date): its outer ring as glac_bound and each of its
      five holes as the intrnl_rock polygon RGI made it from, plus the lowest part of the
      tongue (within 400 m of RGI 7's terminus point) as debris_cov, lying on the glacier as
      GLIMS debris polygons do;
    - the RGI 6.0 outline (Hintereisferner_RGI6.shp, BgnDate 20030799: July 2003, day unknown,
      here the middle of the month as GLIMS dates are full dates) as an older analysis of the
      same glacier."""
    from pyogrio.raw import write
    from shapely import wkb
    from shapely.geometry import MultiPolygon, Point, Polygon

    from glacier_mapper_plugin.core.vector import read_layer
    rgi7 = read_layer(shared_data / "oggm_hef" / "rgi7g_hef.shp")
    rgi6 = read_layer(shared_data / "oggm_hef" / "Hintereisferner_RGI6.shp")
    outline, r7 = rgi7.geometries[0], rgi7.records[0]
    new = dict(anlys_id=r7["anlys_id"], glac_id=r7["glims_id"], anlys_time="2012-11-13T00:00:00",
               src_date=r7["src_date"], glac_name=r7["glac_name"], rec_status="okay")
    rows = [(Polygon(outline.exterior), dict(new, line_type="glac_bound"))]
    rows += [(Polygon(ring), dict(new, line_type="intrnl_rock")) for ring in outline.interiors]
    terminus = Point(r7["termlon"], r7["termlat"]).buffer(400 / 111_000 / np.cos(np.radians(r7["termlat"])))
    rows.append((Polygon(outline.exterior).intersection(terminus), dict(new, line_type="debris_cov")))
    rows.append((rgi6.geometries[0], dict(new, anlys_id=r7["anlys_id"] - 1, src_date="2003-07-15T00:00:00",
                                          anlys_time="2005-01-01T00:00:00", line_type="glac_bound")))
    geometry = np.array([wkb.dumps(MultiPolygon([g]) if g.geom_type == "Polygon" else g) for g, _ in rows],
                        dtype=object)
    fields = [np.array([r[k] for _, r in rows], dtype=object if k != "anlys_id" else "int64") for k in GLIMS_FIELDS]
    path = folder / name
    write(str(path), geometry, fields, list(GLIMS_FIELDS), driver="ESRI Shapefile", geometry_type="MultiPolygon",
          crs="EPSG:4326")
    return path
