"""QGIS 4 (Qt 6) against the real PyQt6: every Qt name the plugin imports from qgis.PyQt and every
attribute path reached from it exists in PyQt6, which QGIS 4's qgis.PyQt re-exports
(scripts/qt6_check.py --pyqt6; the PyQt5-side check is tests/algorithms/test_qt6.py)."""
from pathlib import Path

import pytest

from scripts import qt6_check

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("PyQt6.QtCore", reason="PyQt6 is a dev requirement (requirements-dev.txt)")


def test_the_plugin_resolves_in_pyqt6():
    assert qt6_check.check_pyqt6(ROOT / "glacier_mapper_plugin") == []


def test_what_pyqt6_lacks_is_found(tmp_path):
    (tmp_path / "old.py").write_text(
        "from qgis.PyQt.QtCore import Qt, QDate, QVariant, QRegExp\n"
        "from qgis.PyQt.QtWidgets import QDialog, QMessageBox\n"
        "d = QDate.fromString('2023-09-01', Qt.ISODate)\n"
        "t = (QVariant.Int, QMessageBox.Yes)\n"
        "ok = (Qt.DateFormat.ISODate, QMessageBox.StandardButton.Yes, QDialog.exec)\n")
    found = qt6_check.check_pyqt6(tmp_path)
    assert [line.split(": ", 1)[1] for line in found] == [
        "QRegExp is not in PyQt6.QtCore", "Qt.ISODate does not exist in PyQt6",
        "QMessageBox.Yes does not exist in PyQt6", "QVariant.Int does not exist in PyQt6"]
