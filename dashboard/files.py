"""Writing the app's files atomically: a temporary file beside the target, then `os.replace`, so a
reader (the linkage unit's import, a person opening a report) never sees half a file.

Owns `write_atomic` (bytes, optional file mode set before any byte is written)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int | None = None) -> Path:
    """Write `data` to `path` atomically (creating its folder); `mode` e.g. 0o600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
