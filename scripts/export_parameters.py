"""Writes glacier_mapper_plugin/engine/parameters.json from the QGIS algorithms' own parameter
definitions, so that the command line (engine/cli.py), which runs without QGIS, has the same
names, types, defaults, choices and help. Run with QGIS's Python after changing a parameter:

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 scripts/export_parameters.py

tests/algorithms/test_provider.py fails when the file is out of date."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "glacier_mapper_plugin" / "engine" / "parameters.json"

# Command-line step names (glacier-mapper <step>).
CLI_NAMES = {"synthetic_region": "synthetic-region", "acquire_imagery": "acquire", "train_model": "train",
             "cross_validate": "crossval", "segment_glaciers": "segment", "evaluate_segmentation": "evaluate",
             "area_change": "area-change", "train_mass_balance": "train-mb", "predict_mass_balance": "predict-mb"}


def plain_default(value):
    if isinstance(value, (int, float, str, bool, type(None))):
        return value
    if hasattr(value, "toString"):  # QDate, QDateTime
        return value.toString("yyyy-MM-dd")
    return str(value)


# What the engine writes for each kind of destination: a file named otherwise would be a
# GeoTIFF under .gpkg, a model under .txt (refused by engine/outputs.check).
WRITTEN = {"rasterDestination": ["tif", "tiff"], "vectorDestination": ["gpkg"]}


def output_extensions(d) -> list[str]:
    if d.type() in WRITTEN:
        return WRITTEN[d.type()]
    if d.type() == "fileDestination":
        import re
        return sorted({e.lower() for e in re.findall(r"\*\.(\w+)", d.fileFilter())})
    return []


def describe(alg) -> dict:
    params = []
    for d in alg.parameterDefinitions():
        entry = {"name": d.name(), "type": d.type(), "description": d.description(),
                 "help": alg.PARAM_HELP.get(d.name(), ""), "optional": bool(d.flags() & d.FlagOptional),
                 "default": plain_default(d.defaultValue())}
        if d.type() == "number":
            entry["integer"] = d.dataType() == d.Integer
        extensions = output_extensions(d)
        if extensions:
            entry["extensions"] = extensions
        if d.type() == "enum":
            entry["options"] = list(d.options())
            entry["static_strings"] = bool(d.usesStaticStrings())
        params.append(entry)
    return {"id": alg.name(), "cli": CLI_NAMES[alg.name()], "display": alg.displayName(), "help": alg.HELP,
            "parameters": params, "outputs": [o.name() for o in alg.outputDefinitions()]}


def spec() -> dict:
    from qgis.core import QgsApplication
    app = QgsApplication([], False)  # noqa: F841 (needed for parameter objects)
    QgsApplication.initQgis()
    from glacier_mapper_plugin.algorithms import ALGORITHMS
    steps = []
    for cls in ALGORITHMS:
        alg = cls()
        if alg.name() not in CLI_NAMES:
            continue
        alg.initAlgorithm()
        steps.append(describe(alg))
    return {"steps": steps}


if __name__ == "__main__":
    OUT.write_text(json.dumps(spec(), indent=1, sort_keys=False) + "\n")
    print(f"wrote {OUT}")
