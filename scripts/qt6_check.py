"""What QGIS 4 (Qt 6, PyQt6) would refuse in the plugin's QGIS-side code, found the way QGIS's
pyqt5_to_pyqt6 scanner finds it: every `Class.Member` of a Qt or QGIS class is resolved by
introspection, and an enum member reached without its enum (`Qt.ISODate`,
`QgsProcessing.TypeVector`) is reported with its scoped spelling (`Qt.DateFormat.ISODate`),
which PyQt5 and PyQt6 both accept. Also reported: imports of PyQt5 itself (use qgis.PyQt),
exec_(), QRegExp, QVariant type constants, qApp and compiled resources, all gone in Qt 6.

QGIS's own scanner (scripts/pyqt5_to_pyqt6 in QGIS's sources) resolves enums from PyQt6 and
QGIS 4's bindings, or from its enums.json; neither is installable here, so this check asks
this machine's QGIS (PyQt5), whose sip enums carry the same scoping. Run it with QGIS's
Python: python3 scripts/qt6_check.py [folder]; exit 1 when something is found.

`--pyqt6` asks the real PyQt6 instead (a dev requirement of the engine's venv): every name
imported from qgis.PyQt and every attribute path reached from it (`Qt.DateFormat.ISODate`)
must exist in PyQt6, which is what QGIS 4's qgis.PyQt re-exports."""
from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

REMOVED = {"exec_": "exec_() is exec() in Qt 6", "QRegExp": "QRegExp is gone in Qt 6: use QRegularExpression",
           "qApp": "qApp is gone: use QApplication.instance()", "resources_rc": "compiled resources are gone in Qt 6"}


def _imported(tree) -> dict:
    """Name -> the object it is bound to by `from qgis... import Name` (or qgis.PyQt...)."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("qgis", "PyQt5"):
            try:
                module = importlib.import_module(node.module)
            except ImportError:
                continue
            for alias in node.names:
                if hasattr(module, alias.name):
                    names[alias.asname or alias.name] = getattr(module, alias.name)
    return names


def _enum_scope(owner, member: str):
    """The enum's name when `owner.member` is an enum member reached without its enum."""
    value = getattr(owner, member, None)
    kind = type(value)
    qualname = getattr(kind, "__qualname__", "")
    owner_name = getattr(owner, "__name__", "")
    if "." not in qualname or not isinstance(value, int) or kind in (int, bool):
        return None
    scope, enum = qualname.rsplit(".", 1)
    if scope.split(".")[-1] == owner_name and enum != member and getattr(getattr(owner, enum, None), member, None) is not None:
        return enum
    return None


def check_file(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    names = _imported(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("PyQt5"):
            found.append(f"{path}:{node.lineno}: import from {node.module}: use qgis.PyQt")
        if isinstance(node, (ast.ImportFrom, ast.Import)):
            for alias in node.names:
                if alias.name in REMOVED:
                    found.append(f"{path}:{node.lineno}: {REMOVED[alias.name]}")
        if isinstance(node, ast.Attribute):
            if node.attr in REMOVED:
                found.append(f"{path}:{node.lineno}: {REMOVED[node.attr]}")
            if isinstance(node.value, ast.Name) and node.value.id in names:
                owner = names[node.value.id]
                if node.value.id == "QVariant" and node.attr[:1].isupper() and node.attr not in ("Type",):
                    found.append(f"{path}:{node.lineno}: QVariant.{node.attr}: use QMetaType.Type (Qt 6)")
                    continue
                enum = _enum_scope(owner, node.attr)
                if enum:
                    found.append(f"{path}:{node.lineno}: {node.value.id}.{node.attr} -> "
                                 f"{node.value.id}.{enum}.{node.attr}")
    return found


def check(folder: Path) -> list[str]:
    out = []
    for path in sorted(Path(folder).rglob("*.py")):
        out += check_file(path)
    return out


def _attribute_path(node) -> list[str] | None:
    """['Qt', 'DateFormat', 'ISODate'] for Qt.DateFormat.ISODate; None when not rooted at a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id] + parts[::-1] if isinstance(node, ast.Name) else None


def check_file_pyqt6(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bound, found = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("qgis.PyQt."):
            module_name = "PyQt6." + node.module.split(".", 2)[2]
            try:
                module = importlib.import_module(module_name)
            except ImportError as error:
                found.append(f"{path}:{node.lineno}: {module_name} does not import in PyQt6 ({error})")
                continue
            for alias in node.names:
                if hasattr(module, alias.name):
                    bound[alias.asname or alias.name] = getattr(module, alias.name)
                else:
                    found.append(f"{path}:{node.lineno}: {alias.name} is not in {module_name}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        parts = _attribute_path(node)
        if not parts or parts[0] not in bound:
            continue
        owner = bound[parts[0]]
        for depth, part in enumerate(parts[1:], start=1):
            if not hasattr(owner, part):
                found.append(f"{path}:{node.lineno}: {'.'.join(parts[:depth + 1])} does not exist in PyQt6")
                break
            owner = getattr(owner, part)
    return sorted(set(found))


def check_pyqt6(folder: Path) -> list[str]:
    out = []
    for path in sorted(Path(folder).rglob("*.py")):
        out += check_file_pyqt6(path)
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    pyqt6 = "--pyqt6" in argv
    argv = [a for a in argv if a != "--pyqt6"]
    folder = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "glacier_mapper_plugin"
    found = check_pyqt6(folder) if pyqt6 else check(folder)
    print("\n".join(found) if found else f"nothing for Qt 6 to refuse in {folder}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
