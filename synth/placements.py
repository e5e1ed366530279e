"""Episodes in care: each `looked_after_start` outcome begins an episode with a placement kind, a
placement move now and then, and an end; the csc events `placement_start` (value = the
`contract.PLACEMENT_KINDS` code) and `looked_after_end`.

Owns: `PlacementParams`, `PLACEMENTS` (the default parameters), `placement_rng`, `make_episodes`.

Randomness: everything here is drawn from its own generator, `placement_rng(seed)` =
`np.random.default_rng([seed, PLACEMENT_STREAM])`, derived from the seed only; the county, the
outcomes and every other event come from the main generator exactly as before, so adding the
episodes changes no existing draw (`synth.generate.run(..., placements=False)` gives the same
files without them).

The process, per episode (calendar months; `extract` = the first day after the window):

- kind at entry ~ `entry_mix`; `placement_start` on the entry date (the `looked_after_start`
  date);
- in each later calendar month the episode ends with the monthly exit probability of its
  current kind (geometric duration; the end day is a uniform day of that month); if it does not
  end, the child moves placement with probability `move_prob`, to a kind ~ `move_mix` (possibly
  the same kind: a new carer or home), with a `placement_start` on a uniform day of the month;
- the episode also ends at the child's 18th birthday (`looked_after_end` dated on the birthday);
- a new `looked_after_start` while the episode is open ends it the day before the new start
  (`looked_after_end`; so every start begins its own episode, as the agency records them, and
  no episode overlaps another), rather than being read as a placement move;
- an episode still open on the day before the extract has no end event (censored); nothing is
  dated on or after the extract date.

Parameters (England; sources: DfE, "Children looked after in England including adoptions, year
ending 31 March 2024" (83,630 children looked after on 31 March 2024, 70 per 10,000; 68% in
foster placements, connected-persons / family and friends fostering inside that figure; about
17-19% in secure units, children's homes and semi-independent / supported accommodation; about
6% placed with parents; the rest placed for adoption, independent living and other), and, for
the kinship share of the stock, Sufficiency.org.uk's FOI survey of 150 English councils,
September 2024 (kinship care 15.6%)).  The target is the stock on a day (what the DfE counts):
foster (unrelated carer) 53%, kinship 15%, residential 18%, other 14%, with a mean episode of
about 2 years.  Chosen:

| kind | entry mix | move-to mix | monthly exit probability (mean months in that kind) |
|---|---|---|---|
| 1 foster | 0.50 | 0.44 | 1/26 (26) |
| 2 kinship | 0.14 | 0.10 | 1/30 (30): family placements are the most stable, often ending in a special guardianship order |
| 3 residential | 0.17 | 0.26 | 1/20 (20): older children, step-down to foster care or independence |
| 4 other | 0.19 | 0.20 | 1/14 (14): placement for adoption ends in an adoption order in months, placement with parents in a discharge |

with `move_prob` = 0.02 a month (about one in five children looked after for a year moves at
least once; DfE 2024: 68% of children looked after during the year had one placement, 10% three
or more).  Simulated at steady state these give a stock of foster 53%, kinship 15%, residential
18%, other 14% and a mean episode of 22.6 months.  The entry mix is not a DfE figure (the DfE
publishes the stock); it is what reproduces the stock mix with these exit and move rates.

Note on the county: every child is aged 0-17 on the extract date and outcomes start in 2019-01,
so the stock builds up from zero in 2019 (no episode began before the window) and no child ages
out within the window; the 18th-birthday end applies to other calendars and is tested directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from joinedup import contract
from synth import process as pr

#: second entry of the placement generator's seed sequence: [seed, PLACEMENT_STREAM]
PLACEMENT_STREAM = 0x504C4143  # "PLAC"


@dataclass(frozen=True)
class PlacementParams:
    """Episode parameters, each a tuple over `contract.PLACEMENT_KINDS` in code order."""

    entry_mix: tuple[float, ...]
    move_mix: tuple[float, ...]
    exit_prob: tuple[float, ...]  # monthly probability that an episode in this kind ends
    move_prob: float  # monthly probability of a placement move (if the episode does not end)


PLACEMENTS = PlacementParams(
    entry_mix=(0.50, 0.14, 0.17, 0.19),
    move_mix=(0.44, 0.10, 0.26, 0.20),
    exit_prob=(1 / 26, 1 / 30, 1 / 20, 1 / 14),
    move_prob=0.02,
)


def placement_rng(seed: int) -> np.random.Generator:
    """The placement generator: from the seed only (never from keys or the main stream)."""
    return np.random.default_rng([int(seed), PLACEMENT_STREAM])


def eighteenth_birthday(dob: np.ndarray) -> np.ndarray:
    """dob + 18 years (29 February -> 1 March)."""
    y, m, d = pr.ymd(np.asarray(dob, dtype="datetime64[D]"))
    leap = (m == 2) & (d == 29)
    m2, d2 = np.where(leap, 3, m), np.where(leap, 1, d)
    months = ((y + 18 - 1970) * 12 + (m2 - 1)).astype("datetime64[M]").astype("datetime64[D]")
    return months + (d2 - 1).astype("timedelta64[D]")


def _month_index(dates: np.ndarray) -> np.ndarray:
    return (dates.astype("datetime64[M]") - np.datetime64("1970-01", "M")).astype(np.int64)


def _uniform_day(rng: np.random.Generator, month: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """A uniform day of calendar month `month` (months since 1970-01), on or after `lo`."""
    first = month.astype("datetime64[M]").astype("datetime64[D]")
    nxt = (month + 1).astype("datetime64[M]").astype("datetime64[D]")
    start = np.maximum(first, lo)
    span = np.maximum((nxt - start).astype(np.int64), 1)
    return start + (rng.random(len(month)) * span).astype(np.int64).astype("timedelta64[D]")


def make_episodes(
    rng: np.random.Generator,
    child: np.ndarray,
    start: np.ndarray,
    dob: np.ndarray,
    extract_date: str,
    params: PlacementParams = PLACEMENTS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Episodes in care for the given `looked_after_start`s (child index, date) of children with
    dates of birth `dob` (one per start).  Returns (events, episodes):
    events `child, event_date, event_type, value` (csc `placement_start` with the kind code,
    `looked_after_end`), sorted by date then child; episodes `child, episode, start, end (NaT if
    open), end_reason ('exit' | 'age_18' | 'new_start' | 'open'), first_kind, last_kind,
    n_moves`."""
    kinds = np.array(list(contract.PLACEMENT_KINDS), dtype=np.int64)
    entry = np.asarray(params.entry_mix, dtype=float)
    move = np.asarray(params.move_mix, dtype=float)
    exit_p = np.asarray(params.exit_prob, dtype=float)
    for mix in (entry, move):
        if len(mix) != len(kinds) or abs(mix.sum() - 1) > 1e-9:
            raise ValueError("placement mixes need one share per kind, summing to 1")
    child = np.asarray(child, dtype=np.int64)
    start = np.asarray(start, dtype="datetime64[D]")
    dob = np.asarray(dob, dtype="datetime64[D]")
    order = np.lexsort((start, child))
    child, start, dob = child[order], start[order], dob[order]
    n = len(child)
    last = np.datetime64(extract_date) - np.timedelta64(1, "D")

    # the latest day the episode can still be open, and what closes it there
    nxt_same = np.zeros(n, dtype=bool)
    nxt_same[:-1] = child[1:] == child[:-1]
    new_start_end = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    new_start_end[:-1] = start[1:] - np.timedelta64(1, "D")
    birthday = eighteenth_birthday(dob)
    # candidates (day the episode is ended by a rule, reason); the earliest applies
    cap = np.full(n, last + np.timedelta64(1, "D"))  # open past the window
    reason = np.full(n, "open", dtype=object)
    age = birthday <= last
    cap = np.where(age, birthday, cap)
    reason[age] = "age_18"
    ns = nxt_same & (new_start_end < cap)
    cap = np.where(ns, new_start_end, cap)
    reason[ns] = "new_start"
    if (cap < start).any():
        raise ValueError("an episode would end before it starts (start after 18?)")

    kind = kinds[rng.choice(len(kinds), n, p=entry)]
    first_kind = kind.copy()
    n_moves = np.zeros(n, dtype=np.int64)
    end = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    ev_child, ev_date, ev_kind = [np.arange(n)], [start], [kind.copy()]  # entry placements

    m0 = _month_index(start)
    open_ = np.ones(n, dtype=bool)
    if n:
        for m in range(int(m0.min()) + 1, int(_month_index(np.array([last]))[0]) + 1):
            # draws for every episode each month, so each episode's path depends on the seed only
            u_exit, u_move = rng.random(n), rng.random(n)
            new_kind = kinds[rng.choice(len(kinds), n, p=move)]
            day = _uniform_day(rng, np.full(n, m), start)
            live = open_ & (m0 < m) & (day < cap)
            ends = live & (u_exit < exit_p[kind - 1])
            end[ends] = day[ends]
            reason[ends] = "exit"
            open_ &= ~ends
            moves = live & ~ends & (u_move < params.move_prob)
            kind = np.where(moves, new_kind, kind)
            n_moves += moves
            ev_child.append(np.flatnonzero(moves))
            ev_date.append(day[moves])
            ev_kind.append(new_kind[moves])
    ruled = open_ & (reason != "open")  # ended by a new start or the 18th birthday
    end[ruled] = cap[ruled]

    idx = np.concatenate(ev_child)
    place = pd.DataFrame(
        {
            "child": child[idx],
            "event_date": np.concatenate(ev_date),
            "event_type": "placement_start",
            "value": np.concatenate(ev_kind).astype(float),
        }
    )
    has_end = ~np.isnat(end)
    ends_df = pd.DataFrame(
        {
            "child": child[has_end],
            "event_date": end[has_end],
            "event_type": "looked_after_end",
            "value": np.nan,
        }
    )
    events = (
        pd.concat([place, ends_df], ignore_index=True)
        .sort_values(["event_date", "child"], kind="stable")
        .reset_index(drop=True)
    )
    episodes = pd.DataFrame(
        {
            "child": child,
            "episode": np.arange(n) - np.searchsorted(child, child),
            "start": start,
            "end": end,
            "end_reason": reason,
            "first_kind": first_kind,
            "last_kind": kind,
            "n_moves": n_moves,
        }
    )
    return events, episodes
