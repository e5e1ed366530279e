"""Small hand-made pseudonymised landing files (contract v2) for ingest and publish tests:
`write_agency` writes the hub's attributes and events files, `write_people` the linkage unit's
people (encodings) file."""

from __future__ import annotations

import hashlib
from pathlib import Path

from joinedup import contract


def tok(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


def people_rows(agency: str, n: int) -> list[dict[str, str]]:
    rows = []
    for i in range(n):
        rows.append(
            {
                "agency": agency,
                "record_token": tok(agency, "rec", i),
                "first_name_bf": "0" * contract.BLOOM_HEX_LENGTH,
                "surname_bf": "f" * contract.BLOOM_HEX_LENGTH,
                "first_name_nhs_bf": "",
                "surname_nhs_bf": "",
                "dob_token": tok("dob", i),
                "dob_swap_token": "",
                "birth_year_month": "2015-03",
                "sex": "MF"[i % 2],
                "postcode_token": tok("pc", i),
                "postcode_sector": "JU1 2",
                "nhs_token": tok("nhs", i),
                "upn_token": "",
                "extract_date": "2026-10-01",
            }
        )
    return rows


def attribute_rows(agency: str, n: int) -> list[dict[str, str]]:
    return [
        {
            "agency": agency,
            "record_token": tok(agency, "rec", i),
            "sex": "MF"[i % 2],
            "birth_year": "2015",
            "ethnicity": "WHITE",
            "ward_code": "W900001",
            "extract_date": "2026-10-01",
        }
        for i in range(n)
    ]


def event_rows(agency: str, n_people: int, per_person: int = 3) -> list[dict[str, str]]:
    etype = contract.EVENT_TYPES[agency][1]
    rows = []
    for i in range(n_people):
        for j in range(per_person):
            rows.append(
                {
                    "agency": agency,
                    "event_token": tok(agency, "ev", i, j),
                    "record_token": tok(agency, "rec", i),
                    "event_month": f"2024-0{1 + j}",
                    "event_type": etype,
                    "value": "",
                    "extract_date": "2026-10-01",
                }
            )
    return rows


def write_csv(
    path: Path,
    rows: list[dict[str, str]],
    columns: tuple[str, ...] | list[str],
    newline: str = "\n",
    bom: bool = False,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(columns)] + [",".join(r.get(c, "") for c in columns) for r in rows]
    data = newline.join(lines) + newline
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data.encode("utf-8"))
    return path


def write_people(landing: Path, agency: str, n_people: int = 5) -> Path:
    """The linkage unit's people file (identifier encodings)."""
    return write_csv(
        landing / contract.file_name(agency, "people"),
        people_rows(agency, n_people),
        contract.PEOPLE_COLUMNS,
    )


def write_agency(landing: Path, agency: str, n_people: int = 5) -> tuple[Path, Path]:
    """The hub's attributes and events files."""
    p = write_csv(
        landing / contract.file_name(agency, "attributes"),
        attribute_rows(agency, n_people),
        contract.ATTRIBUTE_COLUMNS,
    )
    e = write_csv(
        landing / contract.file_name(agency, "events"),
        event_rows(agency, n_people),
        contract.EVENT_COLUMNS,
    )
    return p, e
