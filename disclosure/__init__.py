"""Statistical disclosure control for planner outputs (docs/disclosure.md).

Public API:

- `from_frame(df, dims, value, name)` -> `Output`: an interior cross table with its total and
  margins (``Output(...)`` directly for a frame that already holds its cells);
- `protect(outputs, threshold=10)` -> one frame per output, count blanked and `suppressed`;
- `audit(outputs, threshold=10)` -> `Finding`s for published outputs (NA = suppressed);
- `Group(dim, label, members)`: a category that is the sum of others (differencing links);
- `DisclosureError`: bad input, naming output, cell key and rule, never a count.

Imports nothing of the pipeline (pandas, numpy, scipy only; ACRO lazily in `acro_check`).
"""

from disclosure.attacker import Finding, audit
from disclosure.protect import protect, protect_detailed
from disclosure.table import TOTAL, DisclosureError, Group, Output, from_frame

__all__ = [
    "TOTAL",
    "DisclosureError",
    "Finding",
    "Group",
    "Output",
    "audit",
    "from_frame",
    "protect",
    "protect_detailed",
]
