"""Planners' charts, drawn by the app as inline SVG like `dashboard.charts`: the fan chart (what
happened by month, then each forecast view's mean with its 80% and 95% bands).

Owns `fan_chart`.  Suppressed months of the history are gaps with a hollow marker at the foot of
the axis ("fewer than the threshold"), never a value.  Views differ by line style and marker shape
as well as colour; every point carries a tooltip; the page prints the same figures in a table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString

from dashboard.charts import GRID, INK, MUTED, _nice_max, _svg

#: view -> (colour, dash, label); both pass WCAG AA contrast on white
VIEW_STYLE = {
    "top_down": ("#1d4f91", "", "Top-down"),
    "bottom_up": ("#a4330e", "6 4", "Bottom-up"),
}
HISTORY = "#1b1b1b"


def _months_between(a: dt.date, b: dt.date) -> int:
    return (b.year - a.year) * 12 + b.month - a.month


def fan_chart(
    uid: str,
    title: str,
    history: Sequence[dict],
    views: dict[str, Sequence[dict]],
    *,
    y_label: str,
    quarters: Sequence[dict] = (),
    width: int = 720,
    height: int = 300,
) -> SafeString:
    """`history`: [{month, value (None = suppressed)}]; `views`: {view: [{month, mean, lower_80,
    upper_80, lower_95, upper_95}]}; `quarters`: [{quarter (first month), value (the quarter's
    count / 3, None = suppressed)}], drawn as a step a quarter wide where months are small."""
    months = [h["month"] for h in history] + [r["month"] for v in views.values() for r in v]
    if not months:
        return _svg(uid, title, "No data.", width, 40, "")
    first, last = min(months), max(months)
    span = max(_months_between(first, last), 1)
    left, right, top, bottom = 56, 16, 12, 64
    w, h = width - left - right, height - top - bottom
    values = [x["value"] for x in history if x["value"] is not None]
    values += [q["value"] for q in quarters if q["value"] is not None]
    values += [r["upper_95"] for v in views.values() for r in v]
    vmax = _nice_max(max(values, default=1))

    def X(m: dt.date) -> float:
        return left + w * _months_between(first, m) / span

    def Y(v: float) -> float:
        return top + h - h * v / vmax

    parts = []
    for i in range(5):
        y = top + h - h * i / 4
        parts.append(
            f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12" '
            f'fill="{INK}">{vmax * i / 4:,.0f}</text>'
        )
    for view, rows in views.items():
        colour, dash, _ = VIEW_STYLE.get(view, (INK, "", view))
        rows = sorted(rows, key=lambda r: r["month"])
        for lo, hi, opacity in (("lower_95", "upper_95", 0.12), ("lower_80", "upper_80", 0.22)):
            upper = " ".join(f"{X(r['month']):.1f},{Y(r[hi]):.1f}" for r in rows)
            lower = " ".join(f"{X(r['month']):.1f},{Y(r[lo]):.1f}" for r in reversed(rows))
            parts.append(
                f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="{opacity}" '
                'stroke="none"/>'
            )
        pts = " ".join(f"{X(r['month']):.1f},{Y(r['mean']):.1f}" for r in rows)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/>'
        )
        for r in rows:
            tip = (
                f"{r['month']:%b %Y}, {VIEW_STYLE.get(view, (0, 0, view))[2]}: {r['mean']:.1f} "
                f"(80% {r['lower_80']:.0f} to {r['upper_80']:.0f})"
            )
            x, y = X(r["month"]), Y(r["mean"])
            mark = (
                f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" fill="{colour}">'
                if view == "bottom_up"
                else f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">'
            )
            end = "</rect>" if view == "bottom_up" else "</circle>"
            parts.append(f"{mark}<title>{escape(tip)}</title>{end}")
    for q in quarters:
        if q["value"] is None:
            continue
        end = q["quarter"].replace(day=1)
        y_, m_ = divmod(end.month - 1 + 3, 12)
        end = dt.date(end.year + y_, m_ + 1, 1)
        x0, x1 = X(q["quarter"]), min(X(end), left + w)
        parts.append(
            f'<line x1="{x0:.1f}" x2="{x1:.1f}" y1="{Y(q["value"]):.1f}" y2="{Y(q["value"]):.1f}" '
            f'stroke="{MUTED}" stroke-width="3"><title>{q["quarter"]:%b %Y} quarter: '
            f"{q['value'] * 3:,.0f} happened ({q['value']:.1f} a month)</title></line>"
        )
    segment: list[str] = []
    for x in sorted(history, key=lambda r: r["month"]):
        if x["value"] is None:
            if len(segment) > 1:
                parts.append(
                    f'<polyline points="{" ".join(segment)}" fill="none" stroke="{HISTORY}" '
                    'stroke-width="1.5"/>'
                )
            segment = []
            parts.append(
                f'<circle cx="{X(x["month"]):.1f}" cy="{top + h - 4:.1f}" r="3" fill="white" '
                f'stroke="{MUTED}"><title>{x["month"]:%b %Y}: suppressed (small number)</title>'
                "</circle>"
            )
            continue
        px, py = X(x["month"]), Y(x["value"])
        segment.append(f"{px:.1f},{py:.1f}")
        parts.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{HISTORY}"><title>'
            f"{x['month']:%b %Y}: {x['value']:,.0f} happened</title></circle>"
        )
    if len(segment) > 1:
        parts.append(
            f'<polyline points="{" ".join(segment)}" fill="none" stroke="{HISTORY}" '
            'stroke-width="1.5"/>'
        )
    for k in range(0, span + 1, max(span // 8, 1)):
        y_, m_ = divmod(first.month - 1 + k, 12)
        d = dt.date(first.year + y_, m_ + 1, 1)
        parts.append(
            f'<text x="{X(d):.1f}" y="{top + h + 16}" text-anchor="middle" font-size="12" '
            f'fill="{INK}">{d:%b %Y}</text>'
        )
    legend_y = height - 22
    items = [("history", HISTORY, "", "Happened (hollow: suppressed)")]
    if quarters:
        items.append(("quarters", MUTED, "", "Quarter's monthly average"))
    items += [(v, *VIEW_STYLE.get(v, (INK, "", v))) for v in views]
    x0 = left
    for _, colour, dash, label in items:
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<line x1="{x0}" x2="{x0 + 24}" y1="{legend_y}" y2="{legend_y}" stroke="{colour}" '
            f'stroke-width="2"{dash_attr}/><text x="{x0 + 30}" y="{legend_y + 4}" font-size="12" '
            f'fill="{INK}">{escape(label)}</text>'
        )
        x0 += 40 + 7 * len(label)
    parts.append(
        f'<text x="14" y="{top + h / 2}" text-anchor="middle" font-size="12" fill="{MUTED}" '
        f'transform="rotate(-90 14 {top + h / 2})">{escape(y_label)}</text>'
    )
    shown = sum(1 for x in history if x["value"] is not None)
    desc = (
        f"{y_label} by month from {first:%B %Y} to {last:%B %Y}: {shown} months of history "
        f"shown ({len(history) - shown} suppressed), then "
        + ", ".join(VIEW_STYLE.get(v, (0, 0, v))[2] for v in views)
        + " with shaded 80% and 95% intervals; the table below gives the figures."
    )
    return _svg(uid, title, desc, width, height, "".join(parts))
