"""Refuse an extract that carries plaintext identifiers where the contract wants encodings.

An agency that forgot to pseudonymise (or ran an old script) would send names, dates of birth,
postcodes or ids in the token and Bloom-filter columns, or a full date of birth / full postcode in
the coarse clear columns, or simply its raw extract.  Such a file must not be stored at the hub in
any form: ingest calls `find_plaintext` on the parsed file *before* anything is written, and on a
finding records only the file's hash, name and the reason (which names the column, the first row
and the kind of value, never the value) and deletes the landing copy.

Owns the patterns for what a token, a Bloom filter and each kind of plaintext look like.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from joinedup import contract

TOKEN_RE = rf"^[0-9a-f]{{{contract.TOKEN_HEX_LENGTH}}}$"
BLOOM_RE = rf"^[0-9a-f]{{{contract.BLOOM_HEX_LENGTH}}}$"

#: kinds of plaintext, in the order they are tested (first match names the finding)
PLAINTEXT_PATTERNS: tuple[tuple[str, str], ...] = (
    ("date", r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})\s*$"),
    ("postcode", r"^\s*[A-Za-z]{1,2}\d[A-Za-z\d]?\s*\d[A-Za-z]{2}\s*$"),
    ("number or id", r"^\s*[A-Za-z]{0,2}[\d ]{6,}[A-Za-z]?\s*$"),
    ("name or text", r"^\s*[A-Za-z][A-Za-z'’. -]*\s*$"),
)
#: raw-extract columns: their presence means the agency sent the raw file
RAW_ONLY_COLUMNS: tuple[str, ...] = tuple(
    c for c in contract.RAW_PEOPLE_COLUMNS if c not in contract.PEOPLE_COLUMNS
)
#: coarse clear columns and the plaintext they must not carry
CLEAR_COLUMN_LEAKS: dict[str, tuple[str, str]] = {
    "birth_year_month": ("full date of birth", r"^\s*\d{4}-\d{1,2}-\d{1,2}\s*$"),
    "postcode_sector": ("full postcode", r"^\s*[A-Za-z]{1,2}\d[A-Za-z\d]?\s*\d[A-Za-z]{2}\s*$"),
}


@dataclass(frozen=True)
class Finding:
    """Where plaintext was found: column, 1-based data row, kind of value, how many rows."""

    column: str
    row: int
    kind: str
    rows: int

    def reason(self, file_name: str) -> str:
        return (
            f"{file_name} row {self.row}: column {self.column} holds what looks like a plaintext "
            f"{self.kind} ({self.rows} row(s)) where the contract requires an encoding; the "
            "file was refused and not kept at the hub: pseudonymise it and send it again "
            "(rule: plaintext)"
        )


def _first(mask: pa.ChunkedArray) -> tuple[int, int] | None:
    """(1-based first True row, number of True rows) or None."""
    mask = pc.fill_null(mask, False)
    n = pc.sum(mask).as_py() or 0
    if not n:
        return None
    idx = pc.index(mask, True).as_py()
    return idx + 1, n


def _classify(values: pa.ChunkedArray, offending: pa.ChunkedArray) -> tuple[str, int, int] | None:
    """First plaintext kind among the offending values: (kind, first row, rows)."""
    for kind, pattern in PLAINTEXT_PATTERNS:
        hit = pc.and_(offending, pc.match_substring_regex(values, pattern))
        found = _first(hit)
        if found:
            return kind, found[0], found[1]
    return None


def find_plaintext(kind: str, table: pa.Table) -> Finding | None:
    """The first plaintext finding in a parsed contract file (all columns as text), or None.

    Token and Bloom-filter columns: a non-empty value that is not an encoding of the right shape
    and looks like a date, postcode, id number or name.  (Other malformed values are left to
    validation, which quarantines those rows.)  Clear columns: a full date of birth in
    `birth_year_month`, a full postcode in `postcode_sector`.  Raw-only columns (first_name, dob,
    nhs_number, ...) in the header: the raw extract itself."""
    names = table.column_names
    for col in RAW_ONLY_COLUMNS:
        if col in names and table.num_rows:
            values = table.column(col)
            nonempty = _first(pc.not_equal(pc.utf8_trim_whitespace(values), ""))
            if nonempty:
                return Finding(col, nonempty[0], "raw-extract column", nonempty[1])
    encoded = [(c, TOKEN_RE) for c in contract.TOKEN_COLUMNS]
    encoded += [(c, BLOOM_RE) for c in contract.BLOOM_COLUMNS]
    if kind == "events":
        encoded.append(("event_token", TOKEN_RE))
    for col, shape in encoded:
        if col not in names:
            continue
        values = table.column(col)
        offending = pc.and_(
            pc.not_equal(values, ""), pc.invert(pc.match_substring_regex(values, shape))
        )
        if not _first(offending):
            continue
        found = _classify(values, offending)
        if found:
            return Finding(col, found[1], found[0], found[2])
    for col, (what, pattern) in CLEAR_COLUMN_LEAKS.items():
        if col in names:
            found = _first(pc.match_substring_regex(table.column(col), pattern))
            if found:
                return Finding(col, found[0], what, found[1])
    return None


def looks_like_plaintext(value: str) -> str | None:
    """The plaintext kind a single value looks like (for tests and docs), or None."""
    if re.match(TOKEN_RE, value) or re.match(BLOOM_RE, value):
        return None
    for kind, pattern in PLAINTEXT_PATTERNS:
        if re.match(pattern, value):
            return kind
    return None
