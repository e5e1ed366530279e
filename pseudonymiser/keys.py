"""The pseudonymisation key: a file of 32 random bytes as hex, mode 0600, never overwritten.

The key is agency side: every agency in a linkage scheme holds the same key (shared out of band),
the hub never does.  Nothing here prints or logs the key.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pseudonymiser.errors import KeyFileError

KEY_BYTES = 32
#: a key shorter than this (after hex decoding) is refused
MIN_KEY_BYTES = 16


def generate_key(path: str | Path) -> Path:
    """Write a fresh random key to `path` (mode 0600). Refuses to overwrite an existing file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"key file {path} already exists; refusing to overwrite it") from None
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secrets.token_hex(KEY_BYTES) + "\n")
    os.chmod(path, 0o600)
    return path


def load_key(path: str | Path) -> bytes:
    """The key bytes from a hex key file; `KeyFileError` (one line) if missing/unreadable/short."""
    path = Path(path)
    if not path.is_file():
        raise KeyFileError(f"key file {path} not found (run `joinedup keygen` first)")
    try:
        text = path.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except (OSError, UnicodeDecodeError, ValueError):
        raise KeyFileError(f"key file {path} is unreadable or not hex") from None
    if len(key) < MIN_KEY_BYTES:
        raise KeyFileError(f"key file {path} is too short (need at least {MIN_KEY_BYTES} bytes)")
    return key
