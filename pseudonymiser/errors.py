"""Exceptions the pseudonymiser raises: one-line messages that never contain identifiers,
encodings or the key."""

from __future__ import annotations


class PseudonymiserError(ValueError):
    """Base class: a one-line, user-facing message."""


class KeyFileError(PseudonymiserError):
    """The pseudonymisation key file is missing, unreadable, too short or already exists."""


class PseudonymiseError(PseudonymiserError):
    """A raw extract cannot be pseudonymised (e.g. its header lacks a contract column)."""
