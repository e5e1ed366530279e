"""The pseudonymisation key: a file of 32 random bytes as hex, mode 0600, never overwritten.

The key is agency side: every agency in a linkage scheme holds the same key (shared out of band),
the hub never does.  Nothing here prints or logs the key.

`derive_synthetic_key` is for the synthetic demo county only: its agencies derive their key from
the run's seed, so two demo runs with one seed are identical end to end (the links, and so every
figure after them: Bloom-filter similarities move a little with the key, and a pair at a band's
edge with them).  Anyone who knows the seed knows that key, so it must never encode real data:
real agencies use `generate_key` (or their own key management).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from pseudonymiser.errors import KeyFileError

KEY_BYTES = 32
#: a key shorter than this (after hex decoding) is refused
MIN_KEY_BYTES = 16


#: the derivation label of the synthetic county's key (HMAC-SHA256 of the seed under it)
SYNTHETIC_KEY_LABEL = b"joinedup synthetic demo county key: never for real data"


def generate_key(path: str | Path) -> Path:
    """Write a fresh random key to `path` (mode 0600). Refuses to overwrite an existing file."""
    return _write_key(path, secrets.token_hex(KEY_BYTES))


def derive_synthetic_key(path: str | Path, seed: int) -> Path:
    """Write the synthetic demo county's key for `seed` to `path` (mode 0600; refuses to
    overwrite).  Public by construction (anyone with the seed can derive it): synthetic only."""
    key = hmac.new(SYNTHETIC_KEY_LABEL, str(int(seed)).encode(), hashlib.sha256).hexdigest()
    return _write_key(path, key)


def _write_key(path: str | Path, hex_key: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"key file {path} already exists; refusing to overwrite it") from None
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(hex_key + "\n")
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
