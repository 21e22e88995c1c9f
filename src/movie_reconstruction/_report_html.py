"""Figure and HTML pieces shared by the report's modules (:mod:`.report`, :mod:`.report_statistics`).

A leaf module, so that the report and its statistical part can both use them without importing
each other. matplotlib is imported inside :func:`_subplots`.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _subplots(nrows: int = 1, ncols: int = 1, **kwargs):
    """A figure without pyplot: no GUI backend is touched, even inside napari."""
    from matplotlib.figure import Figure

    figsize = kwargs.pop("figsize", None)
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _img(uri: str, alt: str, width: str = "100%") -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}" style="max-width:{width}">'


def _evaluation_outline(ax, mask):
    if mask is not None and (mask >= 1).any() and not (mask >= 1).all():
        ax.contour(mask >= 1, levels=[0.5], colors="#ffcc00", linewidths=0.6)


def _table(rows: list[dict], columns: list[str], formats: dict | None = None) -> str:
    formats = formats or {}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            if c == "verdict" and value in ("beaten", "not beaten"):
                cls = "pass" if value == "beaten" else "fail"
                cells.append(f'<td class="{cls}">{html.escape(str(value))}</td>')
                continue
            if isinstance(value, float):
                text = formats.get(c, "{:.3f}").format(value) if np.isfinite(value) else "–"
            else:
                text = "" if value is None else str(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"
