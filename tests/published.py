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


# WGMS FoG 2025+ table headers. glacier.csv and mass_balance.csv: the columns of
# DOI-WGMS-FoG-2026-02-10 as published scripts read them (mass_balance.csv's header is quoted
# verbatim by projects that read the release; glacier.csv's by schemas mirroring it);
# mass_balance_point.csv: the columns the Mass Balance Machine's WGMS reader names
# (parse_wgms_format, ODINN-SciML/MassBalanceMachine); mass_balance_band.csv: the columns
# published band readers use (glacier_id, year, lower_elevation, upper_elevation, *_balance).
FOG_GLACIER = ("country,short_name,names,id,latitude,longitude,gtng_region,glims_id,rgi50_ids,rgi60_ids,rgi70_ids,"
               "wgi_id,parent_glacier_id,references,remarks").split(",")
FOG_MASS_BALANCE = ("country,glacier_name,glacier_id,outline_id,year,time_system,begin_date,begin_date_unc,"
                    "midseason_date,midseason_date_unc,end_date,end_date_unc,winter_balance,winter_balance_unc,"
                    "summer_balance,summer_balance_unc,annual_balance,annual_balance_unc,ela_position,ela,ela_unc,aar,"
                    "area,investigators,agencies,references,remarks").split(",")
FOG_BAND = ("country,glacier_name,glacier_id,year,lower_elevation,upper_elevation,area,winter_balance,"
            "winter_balance_unc,summer_balance,summer_balance_unc,annual_balance,annual_balance_unc,remarks").split(",")
FOG_POINT = ("country,glacier_name,glacier_id,original_id,id,year,time_system,begin_date,begin_date_unc,end_date,"
             "end_date_unc,latitude,longitude,elevation,balance,balance_unc,density,density_unc,balance_code,method,"
             "remarks").split(",")
# The tables of the releases before 2025 (WGMS-FoG-2019-12-*.csv), upper-case, mm w.e.
OLD_EE = ("POLITICAL_UNIT,NAME,WGMS_ID,YEAR,LOWER_BOUND,UPPER_BOUND,AREA,WINTER_BALANCE,WINTER_BALANCE_UNC,"
          "SUMMER_BALANCE,SUMMER_BALANCE_UNC,ANNUAL_BALANCE,ANNUAL_BALANCE_UNC,REMARKS").split(",")
OLD_A = "POLITICAL_UNIT,NAME,WGMS_ID,LATITUDE,LONGITUDE".split(",")
OLD_AA = "POLITICAL_UNIT,NAME,WGMS_ID,GLIMS_ID,RGI50_ID,RGI60_ID,REMARKS".split(",")
# Hintereisferner in the WGMS glacier list: its WGMS id, position and links (RGI 6, RGI 7 and
# GLIMS ids as in shared/data's RGI files).
HEF = dict(id="491", short_name="HINTEREIS F.", country="AT", latitude="46.8", longitude="10.77",
           glims_id="G010758E46800N", rgi60_ids="RGI60-11.00897", rgi70_ids="RGI2000-v7.0-G-11-03116")


def _csv(path, header, rows):
    import csv
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in header})
    return path


def _hef_records(shared_data, years=(1900, 2100)):
    """Hintereisferner's real WGMS records from shared/data (OGGM's extract of FoG, mm w.e.):
    glacier-wide (mbdata_WGMS-00491.csv) per year, and annual balances of 50 m bands
    (profile_WGMS-00491.csv: one column per band centre)."""
    import csv
    folder = shared_data / "oggm_hef"
    with open(folder / "mbdata_WGMS-00491.csv", newline="") as f:
        wide = [r for r in csv.DictReader(f) if years[0] <= int(r["YEAR"]) <= years[1]]
    with open(folder / "profile_WGMS-00491.csv", newline="") as f:
        reader = csv.reader(f)
        centres = [float(z) for z in next(reader)[1:]]
        bands = [(int(row[0]), z, float(v)) for row in reader for z, v in zip(centres, row[1:])
                 if v != "" and years[0] <= int(row[0]) <= years[1]]
    return wide, bands


def _mm(text):
    return "" if text in ("", None) else float(text)


def fog_release(shared_data, folder, links=True, form="folder", years=(1900, 2100)):
    """Hintereisferner's records as FoG 2025+ publishes them (DOI-WGMS-FoG-2026-02-10 layout:
    data/*.csv, m w.e.). Survey dates: Hintereisferner is measured in the fixed-date system
    (1 October - 30 September, winter to 30 April), written as the dates with 0 days of
    uncertainty. links=False: glacier.csv without RGI/GLIMS ids (records then go by position).
    form: 'folder', 'zip' (the release as downloaded) or 'table' (the path of
    data/mass_balance.csv); years: the first and last kept."""
    import shutil
    wide, bands = _hef_records(shared_data, years)
    root = folder / "DOI-WGMS-FoG-2026-02-10"
    data = root / "data"
    glacier = dict(HEF, names="HINTEREISFERNER", gtng_region="11_central_europe")
    if not links:
        glacier.update(glims_id="", rgi60_ids="", rgi70_ids="")
    _csv(data / "glacier.csv", FOG_GLACIER, [glacier])
    surveys = {}
    rows = []
    for r in wide:
        y = int(r["YEAR"])
        surveys[y] = dict(begin_date=f"{y - 1}-10-01", midseason_date=f"{y}-04-30", end_date=f"{y}-09-30",
                          begin_date_unc=0, midseason_date_unc=0, end_date_unc=0)
        rows.append(dict(country="AT", glacier_name=HEF["short_name"], glacier_id=HEF["id"], year=y, time_system="fixed",
                         area=r["AREA"], **surveys[y],
                         **{f"{k}_balance": "" if r[f"{k.upper()}_BALANCE"] == "" else
                            float(r[f"{k.upper()}_BALANCE"]) / 1000 for k in ("winter", "summer", "annual")}))
    _csv(data / "mass_balance.csv", FOG_MASS_BALANCE, rows)
    _csv(data / "mass_balance_band.csv", FOG_BAND,
         [dict(country="AT", glacier_name=HEF["short_name"], glacier_id=HEF["id"], year=y, lower_elevation=z - 25,
               upper_elevation=z + 25, annual_balance=v / 1000) for y, z, v in bands])
    _csv(data / "mass_balance_point.csv", FOG_POINT, [])
    if form == "zip":
        return Path(shutil.make_archive(str(folder / "DOI-WGMS-FoG-2026-02-10"), "zip", folder, root.name))
    return data / "mass_balance.csv" if form == "table" else root


def old_fog_release(shared_data, folder, years=(1900, 2100)):
    """The same records as a release before 2025 publishes them (WGMS-FoG-2019-12-*.csv,
    upper-case, mm w.e., bands as LOWER_BOUND/UPPER_BOUND rows of the EE table, 9999 for the
    whole glacier; RGI links in the AA lookup table)."""
    wide, bands = _hef_records(shared_data, years)
    root = folder / "DOI-WGMS-FoG-2019-12"
    name = lambda code: root / f"WGMS-FoG-2019-12-{code}.csv"  # noqa: E731
    head = dict(POLITICAL_UNIT="AT", NAME=HEF["short_name"], WGMS_ID=HEF["id"])
    _csv(name("A-GLACIER"), OLD_A, [dict(head, LATITUDE=HEF["latitude"], LONGITUDE=HEF["longitude"])])
    _csv(name("AA-GLACIER-ID-LUT"), OLD_AA, [dict(head, GLIMS_ID=HEF["glims_id"], RGI60_ID=HEF["rgi60_ids"])])
    rows = [dict(head, YEAR=r["YEAR"], LOWER_BOUND=9999, UPPER_BOUND=9999, AREA=r["AREA"],
                 WINTER_BALANCE=r["WINTER_BALANCE"], SUMMER_BALANCE=r["SUMMER_BALANCE"],
                 ANNUAL_BALANCE=r["ANNUAL_BALANCE"]) for r in wide]
    rows += [dict(head, YEAR=y, LOWER_BOUND=f"{z - 25:g}", UPPER_BOUND=f"{z + 25:g}", ANNUAL_BALANCE=v)
             for y, z, v in bands]
    _csv(name("EE-MASS-BALANCE"), OLD_EE, rows)
    return root
