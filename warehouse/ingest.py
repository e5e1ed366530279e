"""Ingest: landing files -> the append-only raw layer, each file once.

Every contract file under the landing folder is hashed; a hash already seen (loaded or
quarantined) is skipped, so re-running changes nothing.  A readable file is loaded whole, in one
transaction, as text, with its load id and 1-based row numbers, and its header as received (a
missing or extra column is for validation to judge; the original file is kept in quarantine when
its header differs from the contract, so nothing it held is lost).  A file that cannot be read as
the contract's CSV (not UTF-8, compressed, broken quoting, no header, unknown name) never becomes a
load: it is copied to the quarantine folder and recorded in `quarantine.files` with the reason
(which names the file, the row where known and the rule, and never quotes the content).  A file
with plaintext identifiers where encodings belong (`warehouse.plaintext`) is refused before
anything is written: only its hash, name and reason are recorded and the landing copy is deleted.
Header-only files and values longer than MAX_FIELD_CHARS are refused whole.

Ingest serves both units, each with its own landing folder and store (`settings.unit`): the
linkage unit accepts only people files (identifier encodings), the hub only attributes and events
files.  A file of the other unit's kind is refused like plaintext (nothing kept, landing copy
deleted): the hub must never hold an identifier encoding, the linkage unit never an event.
A value in a shape-checked column that does not have its shape is never stored
(`warehouse.plaintext.scrub_mask`): NULL is stored instead and `quarantine.scrubbed` records the
row, column and kind of value; validation quarantines the row.
The hub's reference wards file is (re)loaded when its content changes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from joinedup import contract, faults
from joinedup.config import Settings
from warehouse import plaintext, rights
from warehouse.db import connect, transaction

_CHUNK = 1 << 20


class IngestError(ValueError):
    """A landing file that cannot be loaded; the message names the file and the rule."""


class PlaintextRefused(IngestError):
    """A landing file with plaintext identifiers where encodings belong: nothing of it is kept."""


#: longest value accepted in any field (tokens are 32, Bloom filters 128 characters)
MAX_FIELD_CHARS = 1024


def locate_csv_problem(path: Path, n_columns: int) -> str:
    """Where a file that Arrow could not parse first breaks, found with Python's csv module:
    'row N: ...' with the 1-based data row (the header is row 0; one line per row, as the
    contract allows no line breaks in values).  Never quotes the content."""
    with path.open("r", encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, strict=True)
        next(reader, None)
        row = 0
        while True:
            row += 1
            start = reader.line_num
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                return f"row {row}: {str(exc).split(':')[0]} (an unbalanced quote?)"
            if reader.line_num - start > 1:
                return f"row {row}: a quoted value runs over a line break (an unbalanced quote?)"
            if len(fields) != n_columns:
                return f"row {row}: {len(fields)} field(s), expected {n_columns}"
    return "a row the CSV reader could not parse"


@dataclass(frozen=True)
class ReadFile:
    agency: str
    kind: str
    header: list[str]
    table: pa.Table


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def load_id_for(file_hash: str) -> str:
    return "L" + file_hash[:16]


def read_contract_csv(path: Path, unit: str = "hub") -> ReadFile:
    """Read a landing file strictly as the contract's CSV, every value as text.

    Raises IngestError naming the file (and the row where known) on anything else, and
    PlaintextRefused for plaintext or for a kind of file the unit must never hold.
    """
    name = path.name
    try:
        agency, kind = contract.parse_file_name(name)
    except ValueError as exc:
        raise IngestError(str(exc)) from None
    if kind not in contract.UNIT_KINDS[unit]:
        raise PlaintextRefused(wrong_unit_reason(name, kind, unit))
    with path.open("rb") as f:
        head = f.read(4)
    if head[:2] == b"\x1f\x8b":
        raise IngestError(f"{name}: gzip-compressed, expected plain CSV (rule: encoding)")
    if not head:
        raise IngestError(f"{name}: empty file, expected a header row (rule: header)")
    with path.open("rb") as f:
        f.seek(-1, 2)
        if f.read(1) not in (b"\n", b"\r"):
            raise IngestError(
                f"{name}: does not end with a line break, so it may be truncated (rule: truncated)"
            )
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as f:
            header_line = f.readline()
    except UnicodeDecodeError:
        raise IngestError(f"{name} row 0: not UTF-8 text (rule: encoding)") from None
    header = next(csv.reader(io.StringIO(header_line)), [])
    header = [h.strip() for h in header]
    if len(header) < 2:
        raise IngestError(
            f"{name} row 0: header has {len(header)} column(s); expected comma-separated "
            f"{', '.join(contract.columns_for(kind))} (rule: delimiter)"
        )
    if len(set(header)) != len(header):
        raise IngestError(f"{name} row 0: duplicated column names in the header (rule: header)")
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1, encoding="utf8"),
            parse_options=pacsv.ParseOptions(
                delimiter=",", quote_char='"', newlines_in_values=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except UnicodeDecodeError:
        raise IngestError(f"{name}: not UTF-8 text (rule: encoding)") from None
    except pa.ArrowInvalid:
        # Arrow's message quotes the offending row: locate it ourselves instead
        try:
            where = locate_csv_problem(path, len(header))
        except UnicodeDecodeError:
            raise IngestError(f"{name}: not UTF-8 text (rule: encoding)") from None
        raise IngestError(f"{name} {where}: not valid CSV (rule: csv)") from None
    table = table.rename_columns(header)
    if table.num_rows == 0:
        raise IngestError(f"{name}: header only, no data rows (rule: rows)")
    for col in header:
        lengths = pc.utf8_length(table.column(col))
        longest = pc.max(lengths).as_py() or 0
        if longest > MAX_FIELD_CHARS:
            row = pc.index(pc.greater(lengths, MAX_FIELD_CHARS), True).as_py() + 1
            raise IngestError(
                f"{name} row {row}: column {col} holds a value of {longest} characters, "
                f"more than {MAX_FIELD_CHARS} (rule: field_size)"
            )
    finding = plaintext.find_plaintext(kind, table)
    if finding:
        raise PlaintextRefused(finding.reason(name))
    return ReadFile(agency, kind, header, table)


def wrong_unit_reason(name: str, kind: str, unit: str) -> str:
    """Why a file of another unit's kind is refused (nothing of it is kept)."""
    if unit == "hub":
        what = "identifier encodings, which the analytics hub must never hold"
        where = "the linkage unit"
    else:
        what = f"{kind}, which the linkage unit must never hold"
        where = "the analytics hub"
    return (
        f"{name}: a {kind} file holds {what}; it was refused and not kept here: send it to "
        f"{where} (rule: separation)"
    )


def _quarantine_file(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    path: Path,
    file_hash: str,
    reason: str,
    load_id: str | None = None,
    agency: str | None = None,
    kind: str | None = None,
) -> None:
    dest = _quarantine_copy(settings, path, file_hash)
    con.execute(
        "INSERT INTO quarantine.files (file_hash, load_id, file_name, agency, kind, reason, "
        "stored_path, quarantined_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (file_hash) DO NOTHING",
        [file_hash, load_id, path.name, agency, kind, reason, str(dest), datetime.now()],
    )


def _refuse_plaintext(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    file_hash: str,
    reason: str,
    agency: str,
    kind: str,
) -> None:
    """Record the refusal (hash, name, reason; no copy) and delete the landing file."""
    con.execute(
        "INSERT INTO quarantine.files (file_hash, load_id, file_name, agency, kind, reason, "
        "stored_path, quarantined_at) VALUES (?, NULL, ?, ?, ?, ?, NULL, ?) "
        "ON CONFLICT (file_hash) DO NOTHING",
        [file_hash, path.name, agency, kind, reason, datetime.now()],
    )
    path.unlink(missing_ok=True)


def _extract_date(table: pa.Table) -> str | None:
    if "extract_date" not in table.column_names or table.num_rows == 0:
        return None
    value = table.column("extract_date")[0].as_py()
    try:
        return datetime.strptime(value, "%Y-%m-%d").date().isoformat()
    except (TypeError, ValueError):
        return None


def scrub(table: pa.Table, kind: str) -> tuple[pa.Table, list[tuple[int, str, str]]]:
    """The table with every value that lacks its column's shape replaced by null (so never
    stored: raw holds NULL), and [(1-based row, column, kind of value)] for `quarantine.scrubbed`."""
    found: list[tuple[int, str, str]] = []
    for col, bad in plaintext.scrub_mask(kind, table).items():
        values = table.column(col)
        rows = pc.indices_nonzero(pc.cast(bad, pa.uint8())).to_pylist()
        for i in rows:
            found.append((i + 1, col, plaintext.kind_of_value(values[i].as_py())))
        cleaned = pc.if_else(bad, pa.scalar(None, pa.string()), values)
        table = table.set_column(table.column_names.index(col), col, cleaned)
    return table, found


def _load(con: duckdb.DuckDBPyConnection, settings: Settings, path: Path, file_hash: str) -> dict:
    read = read_contract_csv(path, settings.unit)
    expected = contract.columns_for(read.kind)
    load_id = load_id_for(file_hash)
    n = read.table.num_rows
    present = [c for c in expected if c in read.header]
    table, scrubbed = scrub(read.table.select(present), read.kind)
    frame = table.append_column("row_number", pa.array(range(1, n + 1), type=pa.int64()))
    select = ", ".join(f'"{c}"' if c in present else f"NULL AS {c}" for c in expected)
    with transaction(con, "ingest.before_commit"):
        con.execute(
            "INSERT INTO raw.loads (load_id, agency, kind, file_name, file_hash, n_rows, header, "
            "extract_date, status, reason, loaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'loaded', NULL, ?)",
            [
                load_id,
                read.agency,
                read.kind,
                path.name,
                file_hash,
                n,
                ",".join(read.header),
                _extract_date(read.table),
                datetime.now(),
            ],
        )
        con.register("incoming", frame)
        con.execute(
            f"INSERT INTO raw.{read.kind} (load_id, row_number, {', '.join(expected)}) "
            f"SELECT ?, row_number, {select} FROM incoming ORDER BY row_number",
            [load_id],
        )
        con.unregister("incoming")
        if scrubbed:
            con.executemany(
                "INSERT INTO quarantine.scrubbed (load_id, row_number, column_name, kind) "
                "VALUES (?, ?, ?, ?)",
                [[load_id, row, col, what] for row, col, what in scrubbed],
            )
        if set(read.header) != set(expected):
            # keep the file as received: validation will quarantine the batch, and columns the
            # contract does not know are not in the raw tables
            _quarantine_copy(settings, path, file_hash)
    return {
        "file": path.name,
        "load_id": load_id,
        "agency": read.agency,
        "kind": read.kind,
        "rows": n,
        "values_not_stored": len(scrubbed),
    }


def _quarantine_copy(settings: Settings, path: Path, file_hash: str) -> Path:
    """Keep the file exactly as received under the quarantine folder."""
    dest = settings.quarantine_dir / file_hash[:16] / path.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, dest)
    return dest


def load_reference(con: duckdb.DuckDBPyConnection, settings: Settings) -> int | None:
    """The hub's public reference: wards with their name and deprivation decile (from the
    reference areas file; the postcode-sector lookup itself is for agencies and stays out)."""
    path = settings.reference_dir / "areas.csv"
    if settings.unit != "hub" or not path.exists():
        return None
    with transaction(con):
        con.execute("DELETE FROM reference.wards")
        con.execute(
            "INSERT INTO reference.wards SELECT ward_code, any_value(ward_name), "
            "CAST(any_value(imd_decile) AS INTEGER) "
            "FROM read_csv(?, header=true, all_varchar=true) GROUP BY ward_code",
            [str(path)],
        )
    return con.execute("SELECT count(*) FROM reference.wards").fetchone()[0]


def landing_files(settings: Settings) -> list[Path]:
    root = settings.landing_dir
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def run(settings: Settings) -> dict:
    """Load every new landing file into the raw layer. Figures: loaded, skipped, quarantined."""
    started = time.perf_counter()
    loaded: list[dict] = []
    quarantined: list[dict] = []
    skipped = refused = 0
    with connect(settings) as con:
        areas = load_reference(con, settings)
        seen = {
            r[0]
            for r in con.execute(
                "SELECT file_hash FROM raw.loads UNION SELECT file_hash FROM quarantine.files"
            ).fetchall()
        }
        for path in landing_files(settings):
            file_hash = file_sha256(path)
            if file_hash in seen:
                skipped += 1
                continue
            try:
                loaded.append(_load(con, settings, path, file_hash))
                if len(loaded) == 1:
                    faults.checkpoint("ingest.after_first_file")
            except PlaintextRefused as exc:
                agency, kind = contract.parse_file_name(path.name)
                _refuse_plaintext(con, path, file_hash, str(exc), agency, kind)
                quarantined.append({"file": path.name, "reason": str(exc)})
                refused += 1
            except IngestError as exc:
                agency = kind = None
                try:
                    agency, kind = contract.parse_file_name(path.name)
                except ValueError:
                    pass
                _quarantine_file(con, settings, path, file_hash, str(exc), agency=agency, kind=kind)
                quarantined.append({"file": path.name, "reason": str(exc)})
            seen.add(file_hash)
        withheld = rights.enforce(con, settings)  # opted-out records never reach staging
    return {
        "files_loaded": len(loaded),
        "rows_loaded": sum(x["rows"] for x in loaded),
        "files_skipped_already_seen": skipped,
        "files_quarantined": len(quarantined),
        "files_refused_plaintext": refused,
        "quarantined": quarantined,
        "loads": loaded,
        "reference_wards": areas,
        "values_not_stored": sum(x["values_not_stored"] for x in loaded),
        "rows_withheld_optout": withheld,
        "seconds": round(time.perf_counter() - started, 3),
    }
