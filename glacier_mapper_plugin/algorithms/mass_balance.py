"""glacier_mapper:train_mass_balance and predict_mass_balance (engine steps of the same names)."""
from pathlib import Path

from qgis.core import (QgsProcessing, QgsProcessingOutputHtml, QgsProcessingOutputMultipleLayers,
                       QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterFeatureSink, QgsProcessingParameterFeatureSource,
                       QgsProcessingParameterField, QgsProcessingParameterFile,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterLayer,
                       QgsProcessingParameterString)

from .base import DASK_HELP, GlacierMapperAlgorithm, present, run_name, string_enum

CLIMATE_HELP = {
    "HEMISPHERE": "Hydrological year and seasons: north (October-September, winter October-April), "
                  "south (April-March, winter April-October), or auto: from each glacier's or stake's "
                  "latitude.",
    "CLIMATE": "Monthly climate: one or more NetCDF files or zips, merged by variable name (ERA5-Land "
               "or ERA5 monthly means as the CDS delivers them: t2m, tp and the invariant file with the "
               "geopotential z, classic or NetCDF4 with valid_time; HISTALP; any CF file).",
    "CLIMATE_VARIABLES": "Variable mapping when names differ from t2m/temp and tp/prcp, e.g. "
                         "temperature=t2m,precipitation=tp.",
    "CLIMATE_ELEVATION": "Variable with the climate cell's elevation or geopotential "
                         "(default: hgt, z or orog).",
    "DEM": "Elevation raster (any CRS) for slope, aspect and, when predicting, the grid.",
}


def add_climate_parameters(alg):
    # Several files (ERA5-Land comes one variable per file, plus an invariant file) or zips.
    alg.addParameter(QgsProcessingParameterMultipleLayers("CLIMATE", "Monthly climate (NetCDF files or zips)",
                                                          QgsProcessing.SourceType.TypeFile))
    alg.addParameter(string_enum("HEMISPHERE", "Hemisphere (hydrological year and seasons)", ["auto", "north", "south"]))
    alg.addParameter(QgsProcessingParameterString("CLIMATE_VARIABLES", "Climate variable mapping", optional=True))
    alg.addParameter(QgsProcessingParameterString("CLIMATE_ELEVATION", "Climate elevation variable", optional=True))
    alg.addParameter(QgsProcessingParameterRasterLayer("DEM", "DEM"))


class TrainMassBalanceAlgorithm(GlacierMapperAlgorithm):
    ADVANCED = frozenset({"N_ESTIMATORS", "MAX_DEPTH", "LEARNING_RATE", "SEED", "CLIMATE_VARIABLES",
                          "CLIMATE_ELEVATION", "HEMISPHERE", "MAX_DATE_UNCERTAINTY"})
    KEEP = frozenset({"OUTPUT_MODEL"})
    ALG_ID = "train_mass_balance"
    DISPLAY = "Train mass-balance model (Mass Balance Machine)"
    GROUP, GROUP_ID = "Mass balance", "mass_balance"
    HELP = ("Trains the Mass Balance Machine (Sjursen et al. 2025): a monthly XGBoost model of "
            "surface mass balance fitted to point (stake), elevation-band or glacier-wide "
            "seasonal and annual observations by summing its monthly predictions over each "
            "observation's months. Features: monthly temperature (lapse-rate corrected to the "
            "point) and precipitation (times a factor), the elevation difference to the climate "
            "cell, elevation, slope and aspect. Cross-validation leaves glaciers out (or years, "
            "with one glacier); RMSE, bias and R2 per period go to OUTPUT_METRICS and into the "
            "model file (XGBoost JSON + header, never pickle).")
    PARAM_HELP = dict(CLIMATE_HELP, **{
        "OBSERVATIONS": "Optional with WGMS. Table or point layer in the WGMS/MBM layout (POINT_ID, POINT_LAT, "
                        "POINT_LON, POINT_ELEVATION, FROM_DATE, TO_DATE, POINT_BALANCE, glacier id, "
                        "optional PERIOD or BALANCE_CODE), e.g. a CSV; rows with unknown dates are "
                        "dropped and counted.",
        "WGMS": "The WGMS Fluctuations of Glaciers database as released: its zip, its folder, or any one of its "
                "tables (the others are read beside it). FoG 2025 and later (data/glacier.csv, mass_balance.csv, "
                "mass_balance_band.csv, mass_balance_point.csv; m w.e.; survey dates with uncertainties) and the "
                "earlier releases (WGMS-FoG-YYYY-MM-EE-MASS-BALANCE.csv ...; mm w.e.; WGMS fixed dates) are told "
                "apart by their tables, their units by their layout. Glacier-wide and band records go to the "
                "INVENTORY glacier glacier.csv links them to (RGI 7/6 or GLIMS ids), else the one whose outline "
                "holds the WGMS position; points are used where they were measured. Either this or OBSERVATIONS.",
        "MAX_DATE_UNCERTAINTY": "WGMS records whose survey dates are less certain than this (days), or whose "
                                "uncertainty is not stated, are left out, as the Mass Balance Machine does (5).",
        "UNITS": "Units of OBSERVATIONS' balances: m or mm water equivalent (WGMS releases: from their layout).",
        "GLACIER_FIELD": "Column with the glacier id (default: the first of RGI_ID, RGIId, WGMS_ID, GLACIER_ID, "
                         "NAME whose values match INVENTORY's ids).",
        "INVENTORY": "Glacier outlines for glacier-wide and elevation-band records (WGMS layout: YEAR, "
                     "glacier id, ANNUAL/WINTER/SUMMER_BALANCE, LOWER_BOUND/UPPER_BOUND for bands; or "
                     "the wide profile layout, YEAR plus one column per band elevation): the model is "
                     "fitted to the area-weighted mean over the glacier's (or band's) DEM cells.",
        "ID_FIELD": "INVENTORY field matching the observations' glacier ids (RGI ids, WGMS ids or names).",
        "LAPSE_RATE": "Temperature lapse rate from the climate cell to the point (deg C per m).",
        "PRECIPITATION_FACTOR": "Multiplier applied to the gridded precipitation.",
        "N_ESTIMATORS": "Boosting rounds.", "MAX_DEPTH": "Tree depth.",
        "LEARNING_RATE": "Boosting learning rate.", "SEED": "Random seed (row subsampling).",
        "FOLDS": "Cross-validation folds (glaciers or years left out).",
        "OUTPUT_MODEL": "Model file to write (.json).",
        "OUTPUT_METRICS": "RMSE, bias and R2 per period and observation kind.",
    })

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.addParameter(QgsProcessingParameterFeatureSource("OBSERVATIONS", "Observations", [QgsProcessing.SourceType.TypeVector],
                                                              optional=True))
        # The release's zip, folder or one of its tables (a folder can be typed or given by one of its tables).
        self.addParameter(QgsProcessingParameterFile("WGMS", "WGMS Fluctuations of Glaciers release", optional=True,
                                                     fileFilter="WGMS FoG release (*.zip *.csv)"))
        self.addParameter(QgsProcessingParameterNumber("MAX_DATE_UNCERTAINTY", "Largest survey-date uncertainty (days)",
                                                       QgsProcessingParameterNumber.Type.Double, 5.0, False, 0.0, 366.0))
        self.addParameter(string_enum("UNITS", "Balance units (w.e.)", ["m", "mm"]))
        self.addParameter(QgsProcessingParameterField("GLACIER_FIELD", "Glacier id field", parentLayerParameterName="OBSERVATIONS", optional=True))
        # Glacier-wide and elevation-band records are placed on these outlines' DEM cells.
        self.addParameter(QgsProcessingParameterFeatureSource("INVENTORY", "Inventory (for glacier-wide and band records)",
                                                              [QgsProcessing.SourceType.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterField("ID_FIELD", "Inventory id field", parentLayerParameterName="INVENTORY",
                                                      optional=True))
        self.add_glims_parameter()
        add_climate_parameters(self)
        self.addParameter(QgsProcessingParameterNumber("LAPSE_RATE", "Lapse rate (deg C/m)", QgsProcessingParameterNumber.Type.Double, -0.0065, False, -0.02, 0.02))
        self.addParameter(QgsProcessingParameterNumber("PRECIPITATION_FACTOR", "Precipitation factor", QgsProcessingParameterNumber.Type.Double, 1.0, False, 0.0, 10.0))
        self.addParameter(QgsProcessingParameterNumber("N_ESTIMATORS", "Boosting rounds", defaultValue=300, minValue=1, maxValue=20000))
        self.addParameter(QgsProcessingParameterNumber("MAX_DEPTH", "Tree depth", defaultValue=4, minValue=1, maxValue=20))
        self.addParameter(QgsProcessingParameterNumber("LEARNING_RATE", "Learning rate", QgsProcessingParameterNumber.Type.Double, 0.05, False, 1e-4, 1.0))
        self.addParameter(QgsProcessingParameterNumber("SEED", "Seed", defaultValue=42, minValue=0))
        self.addParameter(QgsProcessingParameterNumber("FOLDS", "Cross-validation folds", defaultValue=5, minValue=2, maxValue=50))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT_MODEL", "Model file", "Mass balance model (*.json)"))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT_METRICS", "Cross-validation metrics", QgsProcessing.SourceType.TypeVector,
                                                            optional=True, createByDefault=True))

    def finish(self, parameters, context, outputs, params):
        model = Path(str(params.get("OUTPUT_MODEL") or "model")).stem
        present(context, outputs, run_name("Mass-balance training", model),
                [("OUTPUT_METRICS", None, f"Mass-balance cross-validation - {model}")])


class PredictMassBalanceAlgorithm(GlacierMapperAlgorithm):
    ADVANCED = frozenset({"CLIMATE_VARIABLES", "CLIMATE_ELEVATION", "HEMISPHERE"})
    ALG_ID = "predict_mass_balance"
    DISPLAY = "Predict mass balance (Mass Balance Machine)"
    GROUP, GROUP_ID = "Mass balance", "mass_balance"
    HELP = ("Applies a Mass Balance Machine model to every glacier of an inventory over a range "
            "of hydrological years (October-September): monthly point balances on the DEM "
            "cells inside each outline, summed to annual (Ba), winter (Bw, Oct-Apr) and summer "
            "(Bs, May-Sep) balances. Writes one raster per glacier (bands Ba_YYYY, Bw_YYYY, "
            "Bs_YYYY), the glacier-wide series as a table, and a plot of the series and the "
            "mass-balance/elevation profile.")
    PARAM_HELP = dict(CLIMATE_HELP, **{
        "INVENTORY": "Glacier outlines (any CRS).",
        "ID_FIELD": "Field with the glacier id (default: feature id).",
        "MODEL": "Model file written by train_mass_balance.",
        "START_YEAR": "First hydrological year (ending in September of that year).",
        "END_YEAR": "Last hydrological year.",
        "OUTPUT_FOLDER": "Folder for the per-glacier rasters and the plot.",
        "OUTPUT": "Glacier-wide table: glacier_id, year, ba, bw, bs (m w.e.).",
        "DASK_SCHEDULER": DASK_HELP + " Here: one task per glacier.",
    })

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.add_inventory_parameters()
        self.addParameter(QgsProcessingParameterFile("MODEL", "Mass-balance model", fileFilter="Mass balance model (*.json)"))
        add_climate_parameters(self)
        self.addParameter(QgsProcessingParameterNumber("START_YEAR", "Start year", defaultValue=2000, minValue=1800, maxValue=2200))
        self.addParameter(QgsProcessingParameterNumber("END_YEAR", "End year", defaultValue=2020, minValue=1800, maxValue=2200))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", "Output folder"))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", "Glacier-wide balances", QgsProcessing.SourceType.TypeVector))
        self.add_dask_parameter()
        self.addOutput(QgsProcessingOutputMultipleLayers("RASTERS", "Mass-balance rasters"))
        self.addOutput(QgsProcessingOutputHtml("PLOT", "Mass-balance plot"))

    def finish(self, parameters, context, outputs, params):
        inventory = self.subject(parameters, context, "INVENTORY")
        present(context, outputs, run_name("Mass balance", inventory),
                [("OUTPUT", None, f"Glacier-wide balances - {inventory}")])
