"""Published read models: one snapshot file per audience, built from the analytics hub.

- `analysts` (`published_analysts.duckdb`): pseudonymous child level -- children, timeline,
  scores, models, and the clerical link-review queue (`link_review`, since 1.1.0: pair ids,
  child ids, evidence labels and weights).  No token, no raw/staging/quarantine/audit data, no
  load ids.
- `planners` (`published_planners.duckdb`): aggregates only, small numbers suppressed; no
  child id anywhere.
- `engineers` (`published_engineers.duckdb`): pipeline health -- stage runs, validations,
  loads, quarantine (rules and reasons, never values), linkage quality, model registry.

`builder.publish` builds all three in temp files, verifies them (manifest row counts, the raw
value guard, each snapshot's committed GX suites), and only then swaps each into place with
`os.replace`.  Every table and column is documented in docs/read-models.md; each audience
module's `TABLES` is the same schema as code.
"""

from __future__ import annotations

SCHEMA_VERSION = "1.3.0"
AUDIENCES: tuple[str, ...] = ("analysts", "planners", "engineers")
