"""Charts drawn by the app itself as inline SVG: no script, no CDN, readable without colour.

Owns `bar_chart` (histograms and trends), `calibration_chart` (predicted against observed, with
the diagonal) and `timeline_chart` (events per agency by month).  Every chart has a title and a
description for screen readers (`role="img"`, `aria-labelledby`), text at 12px or more, and
colours that pass WCAG AA contrast on white; pages put the same figures in a table beside it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

INK = "#1b1b1b"
BAR = "#1d4f91"  # 8.9:1 on white
MUTED = "#505a5f"  # 7:1 on white
GRID = "#b1b4b6"
AGENCY_COLOURS = {
    "health": "#00703c",
    "police": "#1d4f91",
    "education": "#6f3c97",
    "csc": "#a4330e",
}


def _svg(uid: str, title: str, desc: str, width: int, height: int, body: str) -> SafeString:
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-labelledby="{uid}-t {uid}-d" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{uid}-t">{escape(title)}</title><desc id="{uid}-d">{escape(desc)}</desc>'
        f"{body}</svg>"
    )


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    mag = 10 ** len(str(int(v))) / 10
    for step in (1, 2, 2.5, 5, 10):
        if step * mag >= v:
            return step * mag
    return v


def bar_chart(
    uid: str,
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    *,
    y_label: str,
    x_label: str,
    width: int = 640,
    height: int = 240,
    every: int = 1,
) -> SafeString:
    """Vertical bars with a labelled y axis; every `every`-th x label is printed."""
    left, right, top, bottom = 56, 12, 12, 44
    w, h = width - left - right, height - top - bottom
    vmax = _nice_max(max(values, default=0))
    n = max(len(values), 1)
    bw = w / n
    parts = []
    for i in range(5):
        y = top + h - h * i / 4
        parts.append(
            f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}" stroke-width="1"/>'
        )
        v = vmax * i / 4
        text = f"{v:,.0f}" if vmax >= 4 else f"{v:.2f}"
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12" fill="{INK}">{text}</text>'
        )
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        bh = h * (v / vmax)
        x = left + i * bw
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{top + h - bh:.1f}" width="{max(bw - 2, 1):.1f}" height="{bh:.1f}" fill="{BAR}">'
            f"<title>{escape(lab)}: {v:,.4g}</title></rect>"
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x + bw / 2:.1f}" y="{top + h + 16}" text-anchor="middle" font-size="12" fill="{INK}">{escape(lab)}</text>'
            )
    parts.append(
        f'<text x="{left + w / 2}" y="{height - 6}" text-anchor="middle" font-size="12" fill="{MUTED}">{escape(x_label)}</text>'
    )
    parts.append(
        f'<text x="14" y="{top + h / 2}" text-anchor="middle" font-size="12" fill="{MUTED}" '
        f'transform="rotate(-90 14 {top + h / 2})">{escape(y_label)}</text>'
    )
    desc = (
        f"{x_label} against {y_label}; {len(values)} bars, largest {max(values, default=0):,.4g}."
    )
    return _svg(uid, title, desc, width, height, "".join(parts))


def calibration_chart(
    uid: str, title: str, predicted: Sequence[float], observed: Sequence[float], width: int = 360
) -> SafeString:
    """Observed rate against mean predicted score per decile, with the line of perfect calibration."""
    height = width
    left, right, top, bottom = 56, 12, 12, 44
    w, h = width - left - right, height - top - bottom
    vmax = _nice_max(max([*predicted, *observed, 0.01]))
    parts = [
        f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top}" stroke="{GRID}" stroke-dasharray="4 3"/>'
    ]
    for i in range(5):
        v = vmax * i / 4
        y = top + h - h * i / 4
        x = left + w * i / 4
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12" fill="{INK}">{v:.2f}</text>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{top + h + 16}" text-anchor="middle" font-size="12" fill="{INK}">{v:.2f}</text>'
        )
    parts.append(
        f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="{GRID}"/>'
    )
    pts = []
    for i, (p, o) in enumerate(zip(predicted, observed, strict=True)):
        x, y = left + w * p / vmax, top + h - h * o / vmax
        pts.append(f"{x:.1f},{y:.1f}")
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{BAR}"><title>decile {i + 1}: '
            f"predicted {p:.3f}, observed {o:.3f}</title></circle>"
        )
    parts.append(
        f'<polyline points="{" ".join(pts)}" fill="none" stroke="{BAR}" stroke-width="1.5"/>'
    )
    parts.append(
        f'<text x="{left + w / 2}" y="{height - 6}" text-anchor="middle" font-size="12" fill="{MUTED}">mean predicted score</text>'
    )
    parts.append(
        f'<text x="14" y="{top + h / 2}" text-anchor="middle" font-size="12" fill="{MUTED}" '
        f'transform="rotate(-90 14 {top + h / 2})">observed rate</text>'
    )
    desc = "Observed outcome rate against mean predicted score for each tenth of children; points on the dashed diagonal are perfectly calibrated."
    return _svg(uid, title, desc, width, height, "".join(parts))


def timeline_chart(uid: str, events: Sequence[dict], agencies: Sequence[str]) -> SafeString:
    """One row per agency, one mark per month with events (count in the mark's tooltip); marks
    differ by shape as well as colour, and a dashed outline marks a link below 0.95."""
    if not events:
        return mark_safe("")
    months = sorted({e["month"] for e in events})
    first, last = months[0], months[-1]
    span = max((last.year - first.year) * 12 + last.month - first.month, 1)
    rows = [a for a in agencies if any(e["agency"] == a for e in events)] or sorted(
        {e["agency"] for e in events}
    )
    left, right, top, row_h = 170, 40, 16, 34
    width = 720
    height = top + row_h * len(rows) + 40
    w = width - left - right
    parts = []
    shapes = {"health": "circle", "police": "square", "education": "diamond", "csc": "triangle"}
    for r, agency in enumerate(rows):
        y = top + row_h * r + row_h / 2
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y}" y2="{y}" stroke="{GRID}"/>')
        parts.append(
            f'<text x="{left - 8}" y="{y + 4}" text-anchor="end" font-size="12" fill="{INK}">{escape(agency_name(agency))}</text>'
        )
        counts: dict[dt.date, list[dict]] = {}
        for e in events:
            if e["agency"] == agency:
                counts.setdefault(e["month"], []).append(e)
        for month, evs in counts.items():
            k = (month.year - first.year) * 12 + month.month - first.month
            x = left + w * k / span
            colour = AGENCY_COLOURS.get(agency, BAR)
            unsure = min(float(e["match_probability"] or 1) for e in evs) < 0.95
            dash = ' stroke-dasharray="2 2"' if unsure else ""
            tip = f"{month:%b %Y}: {len(evs)} event(s): " + ", ".join(
                sorted({e.get("event_label", e["event_type"]) for e in evs})
            )
            shape = shapes.get(agency, "circle")
            if shape == "circle":
                mark = f'<circle cx="{x:.1f}" cy="{y}" r="6" fill="{colour}" stroke="{INK}"{dash}>'
            elif shape == "square":
                mark = f'<rect x="{x - 5.5:.1f}" y="{y - 5.5}" width="11" height="11" fill="{colour}" stroke="{INK}"{dash}>'
            elif shape == "diamond":
                mark = f'<polygon points="{x:.1f},{y - 7} {x + 7:.1f},{y} {x:.1f},{y + 7} {x - 7:.1f},{y}" fill="{colour}" stroke="{INK}"{dash}>'
            else:
                mark = f'<polygon points="{x:.1f},{y - 7} {x + 7:.1f},{y + 6} {x - 7:.1f},{y + 6}" fill="{colour}" stroke="{INK}"{dash}>'
            parts.append(
                mark
                + f"<title>{escape(tip)}</title>"
                + mark.split(" ", 1)[0].replace("<", "</")
                + ">"
            )
    axis_y = top + row_h * len(rows) + 16
    for k in range(0, span + 1, max(span // 6, 1)):
        y_, m_ = divmod(first.month - 1 + k, 12)
        label = dt.date(first.year + y_, m_ + 1, 1).strftime("%b %Y")
        x = left + w * k / span
        parts.append(
            f'<text x="{x:.1f}" y="{axis_y}" text-anchor="middle" font-size="12" fill="{INK}">{label}</text>'
        )
    desc = (
        f"{len(events)} events from {first:%B %Y} to {last:%B %Y} across {len(rows)} agencies; "
        "the table below lists them."
    )
    return _svg(uid, "Joined-up timeline by agency", desc, width, height, "".join(parts))


def agency_name(agency: str) -> str:
    from dashboard.queries import AGENCY_NAMES

    return AGENCY_NAMES.get(agency, agency)
