"""The linkage quality report: metrics.json and a self-contained (offline) report.html.

Charts are Splink's own (match weights, m/u parameters, match-weight histogram) plus cluster
sizes, as Vega-Lite specs rendered by the vega libraries bundled with Splink, inlined once so the
page needs no internet.  Only model parameters and counts are shown: never tokens, Bloom
filters, record ids or keys (`assert_no_encodings` checks the finished page).
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from splink.internals.html_utils import json_for_html, load_chart_libraries

log = logging.getLogger(__name__)

#: a run of 32+ hex characters would be a token, Bloom filter or key
_ENCODING = re.compile(r"\b[0-9a-f]{32,}\b")


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, Decimal):
            return float(o)
        if hasattr(o, "item"):
            return o.item()
        return str(o)


def splink_charts(linker: Any, predictions: Any) -> dict[str, dict]:
    """Splink's own charts for a trained linker and its predictions, as Vega-Lite specs keyed by
    section title.  A chart that fails is left out with a warning: it must never fail the stage."""
    charts: dict[str, dict] = {}
    vis = linker.visualisations
    makers = {
        "Match weights (Splink)": lambda: vis.match_weights_chart(),
        "m and u parameters (Splink)": lambda: vis.m_u_parameters_chart(),
        "Match weights of scored pairs (Splink)": lambda: vis.match_weights_histogram(predictions),
    }
    for title, make in makers.items():
        try:
            charts[title] = make().chart_dict
        except Exception as exc:
            log.warning("linkage chart %r skipped: %s", title, type(exc).__name__)
    return charts


def cluster_size_chart(sizes: dict[int, int]) -> dict:
    """Vega-Lite spec: number of children by number of records."""
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "Cluster sizes (records per child)",
        "data": {"values": [{"records": k, "children": v} for k, v in sorted(sizes.items())]},
        "mark": "bar",
        "encoding": {
            "x": {"field": "records", "type": "ordinal", "title": "records per child"},
            "y": {"field": "children", "type": "quantitative", "title": "children"},
            "tooltip": [{"field": "records"}, {"field": "children"}],
        },
        "width": 400,
        "height": 250,
    }


def _table(metrics: dict) -> str:
    rows = []
    for k, v in metrics.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}: {b}" for a, b in v.items())
        rows.append(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def assert_no_encodings(text: str) -> None:
    if _ENCODING.search(text.replace("sha384-", "")):
        # the bundled JS libraries are checked separately; only our own content reaches here
        raise AssertionError("linkage report would contain an encoding-like value")


def render(metrics: dict, charts: dict[str, dict]) -> str:
    """The full HTML page: metrics table and one section per chart."""
    body = [f"<h1>Joined-Up linkage quality report</h1><h2>Figures</h2>{_table(metrics)}"]
    for i, (title, spec) in enumerate(charts.items()):
        spec = json.loads(json.dumps(spec, cls=_Encoder))
        body.append(
            f"<h2>{html.escape(title)}</h2><div id='chart{i}'></div>"
            f"<script>vegaEmbed('#chart{i}', {json_for_html(spec)}, {{}})"
            ".catch(function(e){document.getElementById('chart"
            f"{i}').textContent = 'chart error: ' + e.message;}});</script>"
        )
    content = "\n".join(body)
    assert_no_encodings(content)
    libs = "".join(f"<script>{src}</script>\n" for src in load_chart_libraries().values())
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:3px 8px;"
        "text-align:left;vertical-align:top}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Joined-Up linkage report</title><style>{style}</style>\n{libs}</head>"
        f"<body>\n{content}\n</body></html>\n"
    )


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; reports are ordinary files
    os.replace(tmp, path)


def write(out_dir: Path, metrics: dict, charts: dict[str, dict]) -> dict[str, str]:
    """Write `metrics.json` and `report.html` under `out_dir`; returns their paths."""
    metrics_path = out_dir / "metrics.json"
    report_path = out_dir / "report.html"
    _write_atomic(metrics_path, json.dumps(metrics, indent=2, cls=_Encoder) + "\n")
    _write_atomic(report_path, render(metrics, charts))
    return {"metrics": str(metrics_path), "report": str(report_path)}
