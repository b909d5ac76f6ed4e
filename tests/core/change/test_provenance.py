"""The report's provenance: prediction tags read back, models summarised from their header, a
moved model told rather than fatal, the plugin's version from metadata.txt."""
import configparser

import numpy as np
import rasterio
from rasterio.transform import from_origin

from glacier_mapper_plugin.core.change.provenance import (PLUGIN_METADATA, model_rows, plugin_version,
                                                          prediction_rows, software_versions, tagged)


def _prediction(path, **tags):
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8",
                       crs="EPSG:32632", transform=from_origin(0, 40, 10, 10)) as dst:
        dst.write(np.ones((1, 4, 4), np.uint8))
        dst.update_tags(**tags)
    return str(path)


def test_rows_from_the_tags_and_the_model_header(tmp_path, untrained_model):
    a = _prediction(tmp_path / "a.tif", DATE="2023-08-28", SOURCE="chip.tif", MODEL="untrained.gmm",
                    THRESHOLD="0.5", MODEL_PATH=str(untrained_model))
    b = _prediction(tmp_path / "b.tif", MODEL_PATH=str(tmp_path / "gone.gmm"))
    rows = prediction_rows(tagged([a, b]), "END")
    assert rows[0] == dict(input="END", file="a.tif", date="2023-08-28", imagery="chip.tif",
                           model="untrained.gmm", threshold="0.5")
    assert rows[1]["date"] == "not tagged"
    models = model_rows(tagged([a, b, a]))
    assert [m["model"] for m in models] == ["untrained.gmm", "gone.gmm"]
    assert models[0]["encoder"] == "resnet18" and models[0]["bands"].startswith("B2")
    assert models[0]["metrics"].startswith("none recorded")
    assert "not readable now" in models[1]["summary"]
    assert len(prediction_rows(tagged([a] * 60), "START")) == 51


def test_versions():
    meta = configparser.ConfigParser()
    meta.read(PLUGIN_METADATA)
    assert plugin_version() == meta["general"]["version"]
    names = [r["software"] for r in software_versions()]
    assert names[:2] == ["Glacier Mapper", "Python"] and "GDAL" in names
