"""Self-contained HTML reports (plots embedded as PNG) that open from the Processing results
viewer, in a browser, or attached to an e-mail: the pieces the domains' reports share."""
from __future__ import annotations

import base64
import html
import io
import math

STYLE = """body{font-family:sans-serif;max-width:1000px;margin:1em auto;color:#222}
table{border-collapse:collapse;font-size:12px;margin:0.5em 0}td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}
th{background:#eef}h2{border-bottom:1px solid #ccc}"""


def pyplot():
    """matplotlib's pyplot on the file-only backend (no display in the engine process)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def png(fig) -> str:
    """The figure as base64 PNG for an <img src="data:image/png;base64,...">; closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.4g}"
    return html.escape(str(v))


def table(rows, columns=None) -> str:
    if not rows:
        return "<p>(none)</p>"
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(c))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
            f"<style>{STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>")
