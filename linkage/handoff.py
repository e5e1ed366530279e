"""The linkage unit's hand-off to the analytics hub: record token -> child id, quality figures and
the clerical review queue.

Separation of functions: the hub never sees an identifier encoding, so all it receives from the
linkage unit is, per linked record, `agency, record_token, child_id, match_probability_max`
(`MAPPING_COLUMNS`, CSV), a JSON of aggregate linkage-quality figures (counts, thresholds,
cluster sizes, review counts, checks, truth figures on synthetic data; never a token), and the
review queue for the dashboard (`REVIEW_QUEUE_COLUMNS`, CSV: pair id, agencies, child ids,
probability, weight, evidence labels and weights, latest decision; never a record token, Bloom
filter or encoding -- the columns are an allow-list).  All are written atomically to the linkage
unit's outbox (`settings.handoff_outbox`); in the embedded default they are then delivered
(copied atomically) into the hub's inbox (`settings.handoff_inbox`).  In a deployment the outbox
is transferred by the organisations' secure file exchange instead (docs/privacy.md, "The
exchange").

Owns: `MAPPING_COLUMNS`, `MAPPING_FILE`, `QUALITY_FILE`, `REVIEW_QUEUE_COLUMNS`, `PAIR_ID_PATTERN`,
`REVIEW_QUEUE_FILE`, `review_queue_frame`, `send`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from joinedup.config import Settings

MAPPING_FILE = "child_mapping.csv"
QUALITY_FILE = "linkage_quality.json"
REVIEW_QUEUE_FILE = "review_queue.csv"
MAPPING_COLUMNS: tuple[str, ...] = ("agency", "record_token", "child_id", "match_probability_max")
#: the review queue as the hub receives it: no record token, Bloom filter or encoding, ever
REVIEW_QUEUE_COLUMNS: tuple[str, ...] = (
    "pair_id", "rank", "agency_l", "child_id_l", "agency_r", "child_id_r", "match_probability",
    "match_weight", "model_side", "evidence_json", "decision", "queued_at", "run_id",
)  # fmt: skip
#: the shape of a pair id (`linkage.review.pair_id`: 'R' + 12 hex characters), as every reader of
#: the queue or of a decisions file checks it
PAIR_ID_PATTERN = r"R[0-9a-f]{12}"
#: decimal places of `match_probability_max` in the mapping file
PROBABILITY_DECIMALS = 6
#: figures of the link stage that are aggregates and safe to hand to the hub
QUALITY_KEYS: tuple[str, ...] = (
    "run_id",
    "mode",
    "mode_reason",
    "records",
    "records_by_agency",
    "children",
    "cluster_sizes",
    "pairs_scored",
    "pairs_above_threshold",
    "guard_edges_dropped",
    "twin_edges_dropped",
    "threshold",
    "review_band",
    "id_history",
    "checks",
    "review",
    "truth",
    "seconds_total",
)


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def review_queue_frame(queue: pd.DataFrame | None) -> pd.DataFrame:
    """`linked.review_queue` rows (`linkage.review.QUEUE_COLUMNS`) reduced to the allow-listed
    `REVIEW_QUEUE_COLUMNS`, as text where the CSV needs it: empty decision while pending,
    `queued_at` as ISO-8601 UTC (`...Z`), empty evidence when unavailable.  Ordered by rank."""
    if queue is None or queue.empty:
        return pd.DataFrame(columns=list(REVIEW_QUEUE_COLUMNS))
    q = queue.reindex(columns=list(REVIEW_QUEUE_COLUMNS)).sort_values("rank", kind="stable")
    q["rank"] = q["rank"].astype(int)
    q["decision"] = q["decision"].fillna("")
    q["evidence_json"] = q["evidence_json"].fillna("")
    q["queued_at"] = pd.to_datetime(q["queued_at"]).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return q


def send(
    settings: Settings, records: pd.DataFrame, figures: dict, queue: pd.DataFrame | None = None
) -> dict:
    """Write the mapping, the quality figures and the review queue (`queue`: the rows of
    `linked.review_queue`; None writes an empty queue) to the outbox and deliver them to the
    hub's inbox (embedded default).  Returns counts and paths only."""
    outbox = settings.handoff_outbox
    mapping = records.reindex(columns=list(MAPPING_COLUMNS)).sort_values(
        ["agency", "record_token"], kind="stable"
    )
    quality = {k: figures[k] for k in QUALITY_KEYS if k in figures}
    # to PROBABILITY_DECIMALS places: Splink's parallel sums differ in the last bits between two
    # runs on the same input, and the hand-off must be byte-identical when the links are
    _atomic_write(
        outbox / MAPPING_FILE,
        lambda f: mapping.to_csv(
            f, index=False, lineterminator="\n", float_format=f"%.{PROBABILITY_DECIMALS}f"
        ),
    )
    _atomic_write(
        outbox / QUALITY_FILE,
        lambda f: json.dump(quality, f, indent=2, default=str, sort_keys=True),
    )
    review_queue = review_queue_frame(queue)
    _atomic_write(
        outbox / REVIEW_QUEUE_FILE,
        lambda f: review_queue.to_csv(
            f, index=False, lineterminator="\n", float_format=f"%.{PROBABILITY_DECIMALS}f"
        ),
    )
    inbox = settings.handoff_inbox
    inbox.mkdir(parents=True, exist_ok=True)
    for name in (REVIEW_QUEUE_FILE, QUALITY_FILE, MAPPING_FILE):
        tmp = inbox / f".{name}.{os.getpid()}.tmp"
        shutil.copyfile(outbox / name, tmp)
        os.replace(tmp, inbox / name)
    return {
        "records": int(len(mapping)),
        "review_queue": int(len(review_queue)),
        "outbox": str(outbox),
        "delivered_to": str(inbox),
    }
