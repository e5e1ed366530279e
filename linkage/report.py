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
    try:
        from linkage.model import blocking_chart

        chart = blocking_chart(linker)
        if chart is not None:
            charts["Blocking: cumulative comparisons of the chosen rules (Splink)"] = chart
    except Exception as exc:
        log.warning("linkage blocking chart skipped: %s", type(exc).__name__)
    try:
        charts["Waterfall for sample pairs (Splink, data removed)"] = waterfall_chart(
            linker, predictions
        )
    except Exception as exc:
        log.warning("linkage waterfall chart skipped: %s", type(exc).__name__)
    return charts


def sample_pairs(pairs: Any, n: int = 6) -> Any:
    """Up to `n` scored pairs spread over the match-probability range (lowest, quantiles,
    highest), deterministic for the same predictions."""
    ordered = pairs.sort_values(["match_probability", "unique_id_l", "unique_id_r"])
    if len(ordered) <= n:
        return ordered
    at = sorted({round(i * (len(ordered) - 1) / (n - 1)) for i in range(n)})
    return ordered.iloc[at]


def waterfall_chart(linker: Any, predictions: Any, n: int = 6) -> dict:
    """Splink's waterfall chart for `n` sample pairs, with `remove_sensitive_data=True` so the
    chart holds match weights and level labels only (no token, Bloom filter or record id).

    The pairs are re-scored with `linker.inference.score_pair` on one-row tables copied from the
    linker's input table, with the retain-columns settings switched on for that call only (the
    bulk prediction keeps them off to save memory)."""
    inputs = list(linker._input_tables_dict.values())
    if len(inputs) != 1:
        raise ValueError("waterfall chart needs a single input table")
    source = inputs[0].physical_name
    uid = linker._settings_obj.column_info_settings.unique_id_column_name  # Splink's record id
    pairs = sample_pairs(
        predictions.as_pandas_dataframe()[[f"{uid}_l", f"{uid}_r", "match_probability"]].rename(
            columns={f"{uid}_l": "unique_id_l", f"{uid}_r": "unique_id_r"}
        ),
        n,
    )
    api = linker._db_api
    so = linker._settings_obj
    saved = (so._retain_matching_columns, so._retain_intermediate_calculation_columns)
    so._retain_matching_columns = so._retain_intermediate_calculation_columns = True
    created: list[str] = []
    try:
        records: list[dict] = []
        for k, (left, right) in enumerate(
            zip(pairs["unique_id_l"], pairs["unique_id_r"], strict=True)
        ):
            sides = []
            for side, rid in (("l", left), ("r", right)):
                name = f"__waterfall_{side}{k}"
                api._execute_sql_against_backend(
                    f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {source} "
                    f"WHERE {uid} = '{str(rid).replace(chr(39), chr(39) * 2)}'"
                )
                created.append(name)
                sides.append(api.table_to_splink_dataframe(name, name))
            records += linker.inference.score_pair(*sides).as_record_list()
        chart = linker.visualisations.waterfall_chart(
            records, filter_nulls=False, remove_sensitive_data=True
        ).chart_dict
    finally:
        so._retain_matching_columns, so._retain_intermediate_calculation_columns = saved
        for name in created:
            api._execute_sql_against_backend(f"DROP TABLE IF EXISTS {name}")
    return chart


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


_GROUP_COLUMNS = (
    ("group", "group"),
    ("persons", "persons"),
    ("records", "records"),
    ("link_rate", "link rate"),
    ("true_link_rate", "true link rate"),
    ("missed_link_rate", "missed-link rate"),
    ("false_merge_rate", "false-merge rate"),
    ("precision", "pairwise precision"),
    ("recall", "pairwise recall"),
    ("f1", "F1"),
)


def _group_tables(by_group: dict[str, list[dict]]) -> str:
    """One table per dimension (sex, ethnicity, deprivation) of `evaluate.by_group` rows."""
    out = [
        "<h2>Linkage quality by group</h2><p>Rates are per true person (synthetic truth). "
        "<b>Missed-link rate</b>: persons with 2+ records whose records were split over 2+ "
        "children (events hidden from their record). <b>False-merge rate</b>: persons whose "
        "records share a child with someone else's (another child's events shown as theirs). "
        "<b>Link rate</b> is the share of records joined to another record, beside the "
        "<b>true link rate</b> it should be. Groups under 50 persons are marked *.</p>"
    ]
    for dim, rows in by_group.items():
        head = "".join(f"<th>{html.escape(label)}</th>" for _, label in _GROUP_COLUMNS)
        body = []
        for row in rows:
            cells = []
            for key, _ in _GROUP_COLUMNS:
                v = row.get(key, "")
                if key == "group" and row.get("persons", 0) < 50:
                    v = f"{v} *"
                cells.append(f"<td>{html.escape(str(v))}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        out.append(f"<h3>By {html.escape(dim)}</h3><table><tr>{head}</tr>{''.join(body)}</table>")
    return "".join(out)


def group_error_chart(by_group: dict[str, list[dict]]) -> dict:
    """Vega-Lite spec: missed-link and false-merge rates for every group, faceted by dimension."""
    values = [
        {"dimension": dim, "group": row["group"], "measure": label, "rate": row[key]}
        for dim, rows in by_group.items()
        for row in rows
        for key, label in (
            ("missed_link_rate", "missed-link rate"),
            ("false_merge_rate", "false-merge rate"),
        )
    ]
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "Linkage error rates by group",
        "data": {"values": values},
        "facet": {"row": {"field": "dimension", "type": "nominal", "title": None}},
        "resolve": {"scale": {"y": "independent"}},
        "spec": {
            "mark": "bar",
            "width": 380,
            "encoding": {
                "y": {"field": "group", "type": "nominal", "title": None},
                "yOffset": {"field": "measure"},
                "x": {"field": "rate", "type": "quantitative", "axis": {"format": "%"}},
                "color": {"field": "measure", "type": "nominal", "title": None},
                "tooltip": [
                    {"field": "dimension"},
                    {"field": "group"},
                    {"field": "measure"},
                    {"field": "rate", "format": ".3%"},
                ],
            },
        },
    }


def render(metrics: dict, charts: dict[str, dict]) -> str:
    """The full HTML page: metrics table, quality by group (when truth is known), and one
    section per chart."""
    truth = metrics.get("truth") if isinstance(metrics.get("truth"), dict) else None
    by_group = (truth or {}).get("by_group") or {}
    shown = dict(metrics)
    if truth is not None:
        shown["truth"] = {k: v for k, v in truth.items() if k != "by_group"}
    body = [f"<h1>Joined-Up linkage quality report</h1><h2>Figures</h2>{_table(shown)}"]
    if by_group:
        body.append(_group_tables(by_group))
        charts = {"Linkage error rates by group": group_error_chart(by_group), **charts}
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
