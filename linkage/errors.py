"""Exceptions the linkage package raises; the CLI catches them and exits non-zero."""

from __future__ import annotations


class LinkageError(Exception):
    """Base class: a one-line, user-facing message; never contains identifiers or encodings."""
