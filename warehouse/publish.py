"""Publish: the read models for each audience, verified and swapped in atomically.

DuckDB allows one writing process, so readers never open the working warehouse.  Publish builds
three snapshot files (`warehouse.read_models`; schemas in docs/read-models.md) -- analysts'
(pseudonymous child level), planners' (suppressed aggregates) and engineers' (pipeline health) --
each in a temp file, verified (manifest counts, no raw token or filter value, its committed GX
suites), and swaps them in with `os.replace` only when all three pass: a reader sees an old
snapshot or a new one, never a partial one, and a failure keeps every old snapshot.
`settings.published_path` is the analysts' snapshot.

Owns `run` (the publish stage) and `outputs_dir/published.json` (the manifest of the last
publish).  Rebuilds the Data Docs site (`expectations.downstream.build_docs`).
"""

from __future__ import annotations

import json
import time

from joinedup.config import Settings
from warehouse.read_models.builder import publish


def run(settings: Settings) -> dict:
    """Build, verify and swap in the three snapshots.  Figures: paths, tables, rows, checks."""
    started = time.perf_counter()
    result = publish(settings)
    counts = result["row_counts"]
    settings.outputs_dir.mkdir(parents=True, exist_ok=True)
    (settings.outputs_dir / "published.json").write_text(json.dumps(result, indent=2))
    from expectations.downstream import build_docs

    return {
        "path": result["paths"]["analysts"],
        "paths": result["paths"],
        "publish_id": result["publish_id"],
        "tables": sum(len(c) for c in counts.values()),
        "rows": sum(sum(c.values()) for c in counts.values()),
        "rows_by_audience": {a: sum(c.values()) for a, c in counts.items()},
        "checks": {t: c["outcome"] for t, c in result["checks"].items()},
        "data_docs": build_docs(settings),
        "seconds": round(time.perf_counter() - started, 3),
    }
