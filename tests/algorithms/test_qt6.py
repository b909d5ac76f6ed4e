"""QGIS 4 (Qt 6): the plugin's QGIS-side code has nothing PyQt6 refuses (scripts/qt6_check.py,
QGIS's pyqt5_to_pyqt6 method run with this machine's bindings), metadata.txt declares Qt 6
support, and the minimum QGIS version is the LTR these tests run against."""
import configparser
from pathlib import Path

from scripts import qt6_check

ROOT = Path(__file__).resolve().parents[2]


def test_nothing_for_qt6_to_refuse():
    assert qt6_check.check(ROOT / "glacier_mapper_plugin") == []


def test_the_check_finds_what_qt6_refuses(tmp_path):
    (tmp_path / "old.py").write_text(
        "from qgis.PyQt.QtCore import Qt, QDate, QVariant\n"
        "from qgis.core import QgsProcessing, QgsProcessingParameterNumber\n"
        "from PyQt5.QtWidgets import QDialog\n"
        "d = QDate.fromString('2023-09-01', Qt.ISODate)\n"
        "t = (QgsProcessing.TypeVector, QgsProcessingParameterNumber.Double, QVariant.Int)\n"
        "ok = (Qt.DateFormat.ISODate, QgsProcessing.SourceType.TypeVector)\n"
        "QDialog().exec_()\n")
    found = "\n".join(qt6_check.check(tmp_path))
    for expected in ("Qt.ISODate -> Qt.DateFormat.ISODate", "QgsProcessing.TypeVector -> QgsProcessing.SourceType.TypeVector",
                     "QgsProcessingParameterNumber.Double -> QgsProcessingParameterNumber.Type.Double",
                     "QVariant.Int", "import from PyQt5.QtWidgets", "exec_() is exec()"):
        assert expected in found
    assert found.count("\n") == 5  # the scoped spellings on line 6 pass


def test_metadata_declares_qt6_and_the_ltr_tested():
    from qgis.core import Qgis
    meta = configparser.ConfigParser()
    meta.read(ROOT / "glacier_mapper_plugin" / "metadata.txt")
    assert meta["general"]["supportsQt6"] == "True"
    tested = ".".join(Qgis.QGIS_VERSION.split(".")[:2])
    assert meta["general"]["qgisMinimumVersion"] == tested == "3.22"
