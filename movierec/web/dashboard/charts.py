"""Small line charts as inline SVG, drawn on the server with matplotlib (no script, no CDN).

matplotlib is imported on the first chart (see :func:`line_chart`). The figure is built with
matplotlib's object API (``Figure``, not pyplot), which keeps no
global state and so is safe in a threaded web worker. The site's Content-Security-Policy
forbids inline styles, so the SVG's ``<style>`` element is dropped and each ``style="..."``
attribute is rewritten as the SVG presentation attributes it sets (``fill``, ``stroke``,
``font-size``...), which the policy allows. Text stays text (``svg.fonttype: none``), which
keeps the document small and readable by screen readers.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

from markupsafe import Markup

_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.S)
_STYLE = re.compile(r"<style.*?</style>", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>", re.S)
_STYLE_ATTR = re.compile(r'style="([^"]*)"')


def line_chart(
    title: str, labels: Sequence[str], series: dict[str, Sequence[float | None]]
) -> Markup:
    """A line per series over ``labels`` (e.g. model versions, oldest first); a None is a
    gap. Empty Markup when there is nothing to draw."""
    if not labels or not any(v is not None for values in series.values() for v in values):
        return Markup("")
    # Imported here, not with the site: matplotlib's 80,000 objects in every web worker made
    # each of the garbage collector's full passes longer, and cold pages 8 % dearer in web
    # CPU (bench_for_you.py); only a worker that draws a chart pays for them.
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    with rc_context({"svg.fonttype": "none", "font.size": 8}):
        figure = Figure(figsize=(6.0, 2.4))
        axes = figure.add_subplot()
        x = list(range(len(labels)))
        for name, values in series.items():
            points = [(i, v) for i, v in zip(x, values, strict=True) if v is not None]
            if points:
                axes.plot(*zip(*points, strict=True), marker="o", label=name)
        axes.set_title(title)
        axes.set_xticks(x, [_short(label) for label in labels], rotation=20, ha="right")
        axes.grid(alpha=0.3)
        if len(series) > 1:
            axes.legend()
        figure.tight_layout()
        out = io.StringIO()
        figure.savefig(out, format="svg")
    svg = _METADATA.sub("", _STYLE.sub("", _PROLOGUE.sub("", out.getvalue(), count=1)))
    svg = _STYLE_ATTR.sub(_presentation, svg)
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{_attr(title)}" ', 1)
    return Markup(svg)  # noqa: S704 - drawn here from numbers and escaped labels


def _presentation(match: re.Match[str]) -> str:
    """``style="fill: #fff; stroke: none"`` as ``fill="#fff" stroke="none"``."""
    pairs = (d.split(":", 1) for d in match.group(1).split(";") if ":" in d)
    return " ".join(f'{name.strip()}="{value.strip()}"' for name, value in pairs)


def _short(version: str) -> str:
    """``20261205T101500Z-ease`` → ``12-05 10:15 ease``: the x axis has little room."""
    match = re.match(r"^\d{4}(\d{2})(\d{2})T?(\d{2})(\d{2})\d*Z?-(.+)$", version)
    if not match:
        return version[:24]
    month, day, hour, minute, algo = match.groups()
    return f"{month}-{day} {hour}:{minute} {algo}"


def _attr(value: str) -> str:
    return (
        value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )
