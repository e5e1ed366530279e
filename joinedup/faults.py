"""Fault injection for the kill-and-resume tests.

`checkpoint(name)` is placed at the riskiest points of each stage (inside a transaction just
before COMMIT, between two file writes).  When the environment variable JOINEDUP_KILL_AT equals
`name`, the process kills itself with SIGKILL there: no `finally`, no `atexit`, no flush, as if
the machine lost power or the scheduler killed the task.  Unset (always, outside tests) it does
nothing but one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "JOINEDUP_KILL_AT"

#: every checkpoint in the code base, by stage (the kill-and-resume test drives each one)
#: (the linkage unit's link_ingest / link_validate run the same code as the hub's ingest / validate,
#: so they share those checkpoints)
CHECKPOINTS: dict[str, tuple[str, ...]] = {
    "link_ingest": ("ingest.after_first_file", "ingest.before_commit"),
    "link_validate": ("validate.after_first_batch", "validate.before_commit"),
    "link": ("link.before_commit",),
    "ingest": ("ingest.after_first_file", "ingest.before_commit"),
    "validate": ("validate.after_first_batch", "validate.before_commit"),
    "assemble": ("assemble.before_commit",),
    "features": ("features.before_commit",),
    "train": ("train.before_current",),
    "score": ("score.before_commit",),
    "forecast": ("forecast.before_commit", "forecast.monthly_before_commit"),
    "publish": ("publish.before_swap",),
}


def checkpoint(name: str) -> None:
    """Kill this process with SIGKILL if JOINEDUP_KILL_AT names this checkpoint."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
