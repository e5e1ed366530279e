"""Point-in-time features: one row per child per as-of date, in `features.child_month`.

Owns the feature definitions (`FEATURE_GROUPS`, `feature_columns()`), the as-of calendar
(`as_of_dates`) and the label.  Everything is computed in DuckDB SQL from `linked.events` strictly
before the as-of date (no event on or after it can change a feature), `linked.children` (sex, birth
year, deprivation decile) and `reference.wards`.  The hub holds the birth year only (age is taken
from the middle of the year) and events dated to the month (the first day of their month): every
window and the label are whole months from the first of a month, so month resolution changes no
event count.  Label: 1 if the child has an outcome
event (`contract.OUTCOME_EVENT_TYPES`) with as_of <= event_date < as_of + 12 months, NULL where
that window is not fully observed (the scoring date).  Children born on/after the as-of date,
aged 18+, or currently looked after (a looked_after_start in the 12 months before) are left out.

Imports only `joinedup` and `warehouse`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date

from joinedup import contract
from joinedup.config import Settings
from warehouse.db import connect

LABEL_MONTHS = 12
WINDOWS = (3, 6, 12, 24)
#: months-since-last is capped here (and used when there was no event at all)
MONTHS_SINCE_CAP = 60
#: the rest of an episode in care (placement starts and moves, the end): no feature reads them
#: and `n_events_used` leaves them out, so the features are those of the events before them
#: (a child in care is left out of the population anyway, see `currently_looked_after`)
EPISODE_ONLY_TYPES: tuple[str, ...] = tuple(
    t for t in contract.CARE_EPISODE_EVENT_TYPES if t not in contract.OUTCOME_EVENT_TYPES
)


@dataclass(frozen=True)
class EventGroup:
    """A family of event types counted together, and how to describe it in a reason."""

    name: str
    types: tuple[str, ...]
    noun: str  # "domestic abuse incident at the household"
    plural: str  # "domestic abuse incidents at the household"


#: counted event groups: n_<group>_<w>m for w in WINDOWS, and months_since_<group>
EVENT_GROUPS: tuple[EventGroup, ...] = (
    EventGroup(
        "ae_injury", ("ae_injury",), "A&E attendance for an injury", "A&E attendances for injuries"
    ),
    EventGroup("ae_attendance", ("ae_attendance",), "A&E attendance", "A&E attendances"),
    EventGroup(
        "domestic_abuse",
        ("domestic_abuse_household",),
        "domestic abuse incident at the household",
        "domestic abuse incidents at the household",
    ),
    EventGroup("missing", ("missing_episode",), "missing episode", "missing episodes"),
    EventGroup("arrest", ("arrest",), "arrest", "arrests"),
    EventGroup(
        "asb", ("asb",), "anti-social behaviour incident", "anti-social behaviour incidents"
    ),
    EventGroup(
        "suspension_exclusion",
        ("suspension", "exclusion"),
        "school suspension or exclusion",
        "school suspensions or exclusions",
    ),
    EventGroup(
        "contact",
        ("contact",),
        "contact to children's social care",
        "contacts to children's social care",
    ),
    EventGroup(
        "referral",
        ("referral",),
        "referral to children's social care",
        "referrals to children's social care",
    ),
    EventGroup("assessment", ("assessment",), "social care assessment", "social care assessments"),
    EventGroup(
        "child_in_need", ("child_in_need",), "child in need episode", "child in need episodes"
    ),
    EventGroup("cp_plan", ("cp_plan_start",), "child protection plan", "child protection plans"),
    EventGroup("looked_after", ("looked_after_start",), "period in care", "periods in care"),
    EventGroup(
        "mental_health",
        ("mental_health_referral",),
        "mental health referral",
        "mental health referrals",
    ),
    EventGroup(
        "teen_parent",
        ("teen_parent",),
        "record of being a young parent",
        "records of being a young parent",
    ),
)

#: single-column features beyond the event groups
OTHER_FEATURES: tuple[str, ...] = (
    "attendance_latest",
    "attendance_trend",
    "attendance_mean_24m",
    "has_attendance",
    "fsm",
    "sen_support",
    "ehcp",
    "school_moves_12m",
    "age_years",
    "age_under_1",
    "age_under_5",
    "age_16_plus",
    "sex_female",
    "sex_unknown",
    "imd_decile",
    "n_agencies",
)
#: columns of features.child_month that are not model inputs
ID_COLUMNS: tuple[str, ...] = ("child_id", "as_of")
META_COLUMNS: tuple[str, ...] = ("label", "n_events_used", "source_loads", "built_at")


def feature_columns() -> list[str]:
    """Model input columns, in table order."""
    cols = []
    for g in EVENT_GROUPS:
        cols += [f"n_{g.name}_{w}m" for w in WINDOWS]
        cols += [f"n_{g.name}_ever", f"months_since_{g.name}"]
    return cols + list(OTHER_FEATURES)


def count_columns() -> list[str]:
    """Feature columns that are counts (log1p-transformed by the logistic model)."""
    return [c for c in feature_columns() if c.startswith("n_") or c == "school_moves_12m"]


def _month_add(d: date, months: int) -> date:
    m = d.year * 12 + d.month - 1 + months
    return date(m // 12, m % 12 + 1, 1)


#: labelled as-of months by default: 24 for fitting, then the 11 embargo months and 6 test months
#: that `models.dataset.split_months` takes off the end (see docs/risk-model.md)
LABELLED_MONTHS = 41


def as_of_dates(
    settings: Settings, n_train_months: int = LABELLED_MONTHS
) -> tuple[list[date], date]:
    """Labelled as-ofs (first of each month; the `n_train_months` ending `LABEL_MONTHS` before the
    extract date, so every label window is fully observed) and the scoring as-of (extract date)."""
    extract = date.fromisoformat(settings.extract_date)
    if extract.day != 1:
        raise ValueError(f"extract_date {settings.extract_date} must be the first of a month")
    last = _month_add(extract, -LABEL_MONTHS)
    train = [_month_add(last, -k) for k in range(n_train_months - 1, -1, -1)]
    return train, extract


def _feature_sql() -> str:
    outcome = ", ".join(f"'{t}'" for t in contract.OUTCOME_EVENT_TYPES)
    episode_only = ", ".join(f"'{t}'" for t in EPISODE_ONLY_TYPES)
    aggs = []
    for g in EVENT_GROUPS:
        types = ", ".join(f"'{t}'" for t in g.types)
        for w in WINDOWS:
            aggs.append(
                f"count(*) FILTER (WHERE e.event_type IN ({types}) "
                f"AND e.event_date >= p.as_of - INTERVAL {w} MONTH) AS n_{g.name}_{w}m"
            )
        aggs.append(f"count(*) FILTER (WHERE e.event_type IN ({types})) AS n_{g.name}_ever")
        aggs.append(f"max(e.event_date) FILTER (WHERE e.event_type IN ({types})) AS last_{g.name}")
    att24 = "WHERE e.event_type = 'attendance' AND e.event_date >= p.as_of - INTERVAL 24 MONTH"
    aggs += [
        # exact (integer tenths) so the result does not depend on summation order
        f"CAST(sum(round(e.value * 10)) FILTER ({att24}) AS DOUBLE)"
        f" / count(e.value) FILTER ({att24}) / 10 AS attendance_mean_24m",
        # ties on the date (duplicate records) broken by value then token: deterministic
        "arg_max(e.value, struct_pack(d := e.event_date, v := e.value, t := e.event_token))"
        " FILTER (WHERE e.event_type = 'attendance'"
        " AND e.value IS NOT NULL AND e.event_date >= p.as_of - INTERVAL 12 MONTH) AS att_vals_latest",
        "max_by(e.value, struct_pack(d := e.event_date, v := e.value, t := e.event_token), 2)"
        " FILTER (WHERE e.event_type = 'attendance'"
        " AND e.value IS NOT NULL AND e.event_date >= p.as_of - INTERVAL 12 MONTH) AS att_vals",
        "max(CASE WHEN e.event_type = 'free_school_meals' THEN 1 ELSE 0 END) AS fsm",
        "max(CASE WHEN e.event_type = 'sen_support' THEN 1 ELSE 0 END) AS sen_support",
        "max(CASE WHEN e.event_type = 'ehcp' THEN 1 ELSE 0 END) AS ehcp",
        "count(*) FILTER (WHERE e.event_type = 'school_move'"
        " AND e.event_date >= p.as_of - INTERVAL 12 MONTH) AS school_moves_12m",
        "count(DISTINCT e.agency) AS n_agencies",
        f"count(e.event_date) FILTER (WHERE e.event_type NOT IN ({episode_only})) AS n_events_used",
        "string_agg(DISTINCT e.load_id, ',' ORDER BY e.load_id) AS source_loads",
        "max(CASE WHEN e.event_type = 'looked_after_start'"
        " AND e.event_date >= p.as_of - INTERVAL 12 MONTH THEN 1 ELSE 0 END) AS currently_looked_after",
    ]
    select_cols = []
    for g in EVENT_GROUPS:
        select_cols += [f"a.n_{g.name}_{w}m" for w in WINDOWS]
        select_cols.append(f"a.n_{g.name}_ever")
        select_cols.append(
            f"least({MONTHS_SINCE_CAP}, coalesce(date_diff('month', a.last_{g.name}, a.as_of), "
            f"{MONTHS_SINCE_CAP}))::INTEGER AS months_since_{g.name}"
        )
    return f"""
    WITH pop AS (
        SELECT c.child_id, d.as_of,
               -- mid-year, or the month before the as-of date for a child born that year
               least(make_date(c.birth_year, 7, 1), (d.as_of - INTERVAL 1 MONTH)::DATE)
                   AS birth_month,
               c.sex, coalesce(c.imd_decile, r.imd_decile) AS imd_decile
        FROM linked.children c
        LEFT JOIN reference.wards r ON r.ward_code = c.ward_code
        CROSS JOIN as_of_dates d
        WHERE c.birth_year IS NOT NULL
          AND make_date(c.birth_year, 1, 1) < d.as_of
          AND date_diff('month', make_date(c.birth_year, 7, 1), d.as_of) < 18 * 12
    ),
    agg AS (
        SELECT p.child_id, p.as_of, any_value(p.birth_month) AS birth_month,
               any_value(p.sex) AS sex, any_value(p.imd_decile) AS imd_decile,
               {", ".join(aggs)}
        FROM pop p
        LEFT JOIN linked.events e ON e.child_id = p.child_id AND e.event_date < p.as_of
        GROUP BY p.child_id, p.as_of
    ),
    labels AS (
        SELECT d.as_of, o.child_id, 1 AS label
        FROM as_of_dates d
        JOIN linked.events o
          ON o.event_type IN ({outcome})
         AND o.event_date >= d.as_of AND o.event_date < d.as_of + INTERVAL {LABEL_MONTHS} MONTH
        WHERE d.labelled
        GROUP BY d.as_of, o.child_id
    )
    SELECT a.child_id, a.as_of,
           {", ".join(select_cols)},
           a.att_vals_latest AS attendance_latest,
           CASE WHEN len(a.att_vals) = 2 THEN a.att_vals[1] - a.att_vals[2] END AS attendance_trend,
           round(a.attendance_mean_24m, 2) AS attendance_mean_24m,
           CASE WHEN a.att_vals_latest IS NULL THEN 0 ELSE 1 END AS has_attendance,
           a.fsm, a.sen_support, a.ehcp, a.school_moves_12m,
           round(date_diff('month', a.birth_month, a.as_of) / 12.0, 2) AS age_years,
           CASE WHEN date_diff('month', a.birth_month, a.as_of) < 12 THEN 1 ELSE 0 END
               AS age_under_1,
           CASE WHEN date_diff('month', a.birth_month, a.as_of) < 60 THEN 1 ELSE 0 END
               AS age_under_5,
           CASE WHEN date_diff('month', a.birth_month, a.as_of) >= 192 THEN 1 ELSE 0 END
               AS age_16_plus,
           CASE WHEN a.sex = 'F' THEN 1 ELSE 0 END AS sex_female,
           CASE WHEN a.sex IN ('M', 'F') THEN 0 ELSE 1 END AS sex_unknown,
           a.imd_decile::INTEGER AS imd_decile,
           a.n_agencies,
           CASE WHEN d.labelled THEN coalesce(l.label, 0) END::INTEGER AS label,
           a.n_events_used, a.source_loads, now()::TIMESTAMP AS built_at
    FROM agg a
    JOIN as_of_dates d ON d.as_of = a.as_of
    LEFT JOIN labels l ON l.child_id = a.child_id AND l.as_of = a.as_of
    WHERE a.currently_looked_after = 0
    ORDER BY a.as_of, a.child_id
    """


def build(
    con,
    dates: list[date],
    labelled: list[bool],
    table: str = "features.child_month",
    settings: Settings | None = None,
) -> int:
    """(Re)build `table` for the given as-of dates inside one transaction; returns its row count.
    With `settings`, the `features` suite runs before COMMIT (a critical failure rolls the rebuild
    back and raises `DownstreamCheckFailed`; the outcome is in audit.validations)."""
    import pandas as pd

    from expectations.downstream import checked_transaction

    cal = pd.DataFrame({"as_of": pd.to_datetime(dates).date, "labelled": labelled})
    con.register("as_of_dates_df", cal)
    try:
        with checked_transaction(con, settings, [table], "features.before_commit"):
            con.execute(
                "CREATE OR REPLACE TEMP TABLE as_of_dates AS SELECT CAST(as_of AS DATE) AS as_of, "
                "labelled FROM as_of_dates_df"
            )
            con.execute(f"CREATE OR REPLACE TABLE {table} AS {_feature_sql()}")
    finally:
        con.unregister("as_of_dates_df")
    return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def run(settings: Settings, n_train_months: int = LABELLED_MONTHS, **_: object) -> dict:
    """Build `features.child_month` for the training as-ofs and the scoring as-of."""
    t0 = time.perf_counter()
    train, score_date = as_of_dates(settings, n_train_months)
    with connect(settings) as con:
        n = build(con, train + [score_date], [True] * len(train) + [False], settings=settings)
        from expectations.downstream import latest_check

        checks = latest_check(con, "features.child_month")
        no_birth = con.execute(
            "SELECT count(*) FROM linked.children WHERE birth_year IS NULL"
        ).fetchall()[0][0]
        per = con.execute(
            "SELECT as_of, count(*), sum(label), avg(label) FROM features.child_month "
            "GROUP BY as_of ORDER BY as_of"
        ).fetchall()
    labelled = [r for r in per if r[2] is not None]
    return {
        "rows": int(n),
        "as_of_first": str(train[0]),
        "as_of_last_labelled": str(train[-1]),
        "scoring_as_of": str(score_date),
        "n_features": len(feature_columns()),
        "children_without_birth_month": int(no_birth),
        "labelled_rows": int(sum(r[1] for r in labelled)),
        "positives": int(sum(r[2] for r in labelled)),
        "label_rate": round(sum(r[2] for r in labelled) / max(1, sum(r[1] for r in labelled)), 5),
        "scoring_rows": int(
            sum(r[1] for r in per if r[2] is None and str(r[0]) == str(score_date))
        ),
        "checks": checks,
        "seconds": round(time.perf_counter() - t0, 2),
    }
