"""Refuse an extract that carries plaintext identifiers where the contract wants encodings.

An agency that forgot to pseudonymise (or ran an old script) would send names, dates of birth,
postcodes or ids in the token and Bloom-filter columns, or a full date of birth / full postcode in
the coarse clear columns, or simply its raw extract.  Such a file must not be stored at the hub in
any form: ingest calls `find_plaintext` on the parsed file *before* anything is written, and on a
finding records only the file's hash, name and the reason (which names the column, the first row
and the kind of value, never the value) and deletes the landing copy.

Second line of defence (`scrub_mask`): a value in a shape-checked column (an encoding, or a coarse
clear field such as `birth_year`, `event_month`, `ward_code`) that does not have its column's
shape is never written anywhere, even when it does not look like plaintext: ingest stores NULL in
its place and records only the row, the column and the kind of value (`quarantine.scrubbed`), and
validation quarantines the row.

Owns the patterns for what a token, a Bloom filter, each shape-checked clear column and each kind
of plaintext look like.  Patterns are RE2 (Arrow) and Python `re` compatible and Unicode-aware:
an accented name (`Renée`), a name in another script, or a number written with dashes, dots or
slashes is recognised as plaintext.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from joinedup import contract

TOKEN_RE = rf"^[0-9a-f]{{{contract.TOKEN_HEX_LENGTH}}}$"
BLOOM_RE = rf"^[0-9a-f]{{{contract.BLOOM_HEX_LENGTH}}}$"

#: kinds of plaintext, in the order they are tested (first match names the finding).  `\pL` is any
#: Unicode letter and `\pM` a combining mark, so accented and non-Latin names are caught.
PLAINTEXT_PATTERNS: tuple[tuple[str, str], ...] = (
    (
        "date",
        r"^\s*(\d{4}\s*[-/.]\s*\d{1,2}\s*[-/.]\s*\d{1,2}|\d{1,2}\s*[-/.]\s*\d{1,2}\s*[-/.]\s*\d{2,4}|\d{8})\s*$",
    ),
    ("postcode", r"^\s*[A-Za-z]{1,2}\d[A-Za-z\d]?\s*\d[A-Za-z]{2}\s*$"),
    ("number or id", r"^\s*[A-Za-z]{0,3}[\s\-./]*(\d[\s\-./]*){6,}[A-Za-z]?\s*$"),
    ("name or text", r"^\s*[\pL\pM][\pL\pM'’‘`´.,\s-]*\s*$"),
)
#: raw-extract columns: their presence means the agency sent the raw file
RAW_ONLY_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(
        c
        for c in contract.RAW_PEOPLE_COLUMNS + contract.RAW_EVENT_COLUMNS
        if c not in contract.PEOPLE_COLUMNS + contract.ATTRIBUTE_COLUMNS + contract.EVENT_COLUMNS
    )
)
_FULL_DATE = r"^\s*\d{4}\s*[-/.]\s*\d{1,2}\s*[-/.]\s*\d{1,2}\s*$"
_FULL_POSTCODE = r"^\s*[A-Za-z]{1,2}\d[A-Za-z\d]?\s*\d[A-Za-z]{2}\s*$"
#: coarse clear columns and the plaintext they must not carry
CLEAR_COLUMN_LEAKS: dict[str, tuple[str, str]] = {
    "birth_year_month": ("full date of birth", _FULL_DATE),
    "birth_year": ("full date of birth", _FULL_DATE),
    "postcode_sector": ("full postcode", _FULL_POSTCODE),
    "ward_code": ("full postcode", _FULL_POSTCODE),
}
#: the shape of every shape-checked clear column; a value without it is not stored
CLEAR_SHAPES: dict[str, str] = {
    "birth_year_month": r"^[0-9]{4}-[0-9]{2}$",
    "birth_year": r"^[0-9]{4}$",
    "postcode_sector": r"^[A-Z]{1,2}[0-9][A-Z0-9]? [0-9]$",
    "ward_code": r"^[A-Z][0-9]{6,8}$",
    "event_month": r"^[0-9]{4}-[0-9]{2}$",
}


def _alternatives(values) -> str:
    return "^(" + "|".join(sorted(values)) + ")$"


#: coded clear columns: their allowed values.  A value outside them that looks like plaintext
#: (a word of two or more letters, a date, a postcode, a number of six or more digits: a shifted
#: column, a free-text entry) is not stored either; a single stray character (`X`) is stored and
#: left for its validation rule.
CODED_SHAPES: dict[str, str] = {
    "agency": _alternatives(contract.AGENCIES),
    "sex": _alternatives(contract.SEXES),
    "ethnicity": _alternatives(contract.ETHNICITIES),
    "event_type": _alternatives({t for ts in contract.EVENT_TYPES.values() for t in ts}),
    "value": r"^-?[0-9]+(\.[0-9]+)?$",
    "extract_date": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
}
_PLAINTEXT_IN_CODED = "|".join(
    f"({p})" if k != "name or text" else r"(^\s*[\pL\pM][\pL\pM'’‘`´.,\s-]+\s*$)"
    for k, p in PLAINTEXT_PATTERNS
)


def encoding_shapes(kind: str) -> dict[str, str]:
    """Encoding column -> its shape (regex) for a file kind: tokens, Bloom filters."""
    shapes = {c: TOKEN_RE for c in contract.TOKEN_COLUMNS}
    shapes.update({c: BLOOM_RE for c in contract.BLOOM_COLUMNS})
    shapes["event_token"] = TOKEN_RE
    return {c: r for c, r in shapes.items() if c in contract.columns_for(kind)}


def checked_shapes(kind: str) -> dict[str, str]:
    """Every shape-checked column of a file kind (encodings and coarse clear fields) -> regex."""
    shapes = encoding_shapes(kind)
    shapes.update({c: r for c, r in CLEAR_SHAPES.items() if c in contract.columns_for(kind)})
    return shapes


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
            "file was refused and not kept here: pseudonymise it and send it again "
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
    for col, shape in encoding_shapes(kind).items():
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


def scrub_mask(kind: str, table: pa.Table) -> dict[str, pa.ChunkedArray]:
    """Column -> boolean mask of the values that must never be stored (only columns with at
    least one): in a shape-checked column, any non-empty value without its shape; in a coded
    column, a value outside its codes that looks like plaintext."""
    out: dict[str, pa.ChunkedArray] = {}
    for col, shape in checked_shapes(kind).items():
        if col not in table.column_names:
            continue
        values = table.column(col)
        bad = pc.fill_null(
            pc.and_(pc.not_equal(values, ""), pc.invert(pc.match_substring_regex(values, shape))),
            False,
        )
        if pc.any(bad).as_py():
            out[col] = bad
    for col, shape in CODED_SHAPES.items():
        if col not in table.column_names or col not in contract.columns_for(kind):
            continue
        values = table.column(col)
        bad = pc.fill_null(
            pc.and_(
                pc.invert(pc.match_substring_regex(values, shape)),
                pc.match_substring_regex(values, _PLAINTEXT_IN_CODED),
            ),
            False,
        )
        if pc.any(bad).as_py():
            out[col] = bad
    return out


def kind_of_value(value: str) -> str:
    """What a value that failed its shape looks like, for `quarantine.scrubbed` (never the value)."""
    return looks_like_plaintext(value) or "not of the column's shape"


def looks_like_plaintext(value: str) -> str | None:
    """The plaintext kind a single value looks like, or None (the same RE2 patterns as files)."""
    one = pa.chunked_array([pa.array([value], pa.string())])
    if (
        pc.any(pc.match_substring_regex(one, TOKEN_RE)).as_py()
        or pc.any(pc.match_substring_regex(one, BLOOM_RE)).as_py()
    ):
        return None
    for kind, pattern in PLAINTEXT_PATTERNS:
        if pc.any(pc.match_substring_regex(one, pattern)).as_py():
            return kind
    return None
