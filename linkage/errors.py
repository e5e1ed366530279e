"""Exceptions the linkage package raises; the CLI catches `LinkageError` and exits non-zero."""

from __future__ import annotations


class LinkageError(Exception):
    """Base class: a one-line, user-facing message; never contains identifiers or encodings."""


class KeyFileError(LinkageError, ValueError):
    """The pseudonymisation key file is missing, unreadable, too short or already exists."""


class PseudonymiseError(LinkageError, ValueError):
    """A raw extract cannot be pseudonymised (e.g. its header lacks a contract column)."""
