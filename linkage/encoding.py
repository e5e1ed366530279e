"""Encodings of identifiers: normalisation, keyed tokens, Soundex and keyed Bloom filters.

Everything here is deterministic given the key, so two agencies holding the same key encode the
same person the same way.  `docs/data-contract.md` specifies these rules for agencies that write
their own pseudonymiser; keep the two in step.

- token(field, value) = first TOKEN_HEX_LENGTH hex chars of HMAC-SHA256(key, f"{field}|{value}")
  of the *normalised* value; empty value -> empty token.
- Bloom filter of a normalised name: BLOOM_BITS bits; for each distinct padded bigram
  ("_" + name + "_"), d = HMAC-SHA256(key, "bloom|" + bigram), h1 = d[0:8], h2 = d[8:16]
  (big-endian unsigned), bit positions (h1 + i * h2) mod BLOOM_BITS for i in 0..BLOOM_HASHES-1;
  bit p is byte p // 8, mask 0x80 >> (p % 8); lowercase hex.  Empty name -> empty string.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import unicodedata
from functools import lru_cache

import pandas as pd

from joinedup.contract import BLOOM_BITS, BLOOM_HEX_LENGTH, TOKEN_HEX_LENGTH

#: hash functions (bit positions) per bigram in the Bloom filters
BLOOM_HASHES = 10
BLOOM_PAD = "_"

_SPECIAL = str.maketrans(
    {"Ø": "O", "ø": "o", "Æ": "AE", "æ": "ae", "Œ": "OE", "œ": "oe", "Ł": "L", "ł": "l",
     "Đ": "D", "đ": "d", "Þ": "TH", "þ": "th", "ß": "SS"}
)  # fmt: skip
_NOT_AZ = re.compile(r"[^A-Z]")
_NOT_ALNUM = re.compile(r"[^A-Z0-9]")
_NOT_DIGIT = re.compile(r"[^0-9]")
_POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# ---------------------------------------------------------------- normalisation
def normalise_name(value: str | None) -> str:
    """Upper case A-Z only: accents stripped, punctuation, digits and spaces removed."""
    if not value:
        return ""
    text = unicodedata.normalize("NFKD", str(value).translate(_SPECIAL))
    text = "".join(c for c in text if not unicodedata.combining(c)).upper()
    return _NOT_AZ.sub("", text)


def normalise_postcode(value: str | None) -> str:
    """Upper case letters and digits only ("ju4 7qb" -> "JU47QB")."""
    return _NOT_ALNUM.sub("", str(value).upper()) if value else ""


def postcode_sector(value: str | None) -> str:
    """The postcode sector, clear ("JU4 7QB" -> "JU4 7"); empty unless a well-formed postcode."""
    pc = normalise_postcode(value)
    if not _POSTCODE.match(pc):
        return ""
    return f"{pc[:-3]} {pc[-3]}"


def normalise_nhs(value: str | None) -> str:
    """Digits only ("943 476 5919" -> "9434765919")."""
    return _NOT_DIGIT.sub("", str(value)) if value else ""


def normalise_upn(value: str | None) -> str:
    """Upper case letters and digits only."""
    return _NOT_ALNUM.sub("", str(value).upper()) if value else ""


def normalise_dob(value: str | None) -> str:
    """The date of birth as given, surrounding spaces removed (YYYY-MM-DD expected)."""
    return str(value).strip() if value else ""


def _parse_date(value: str) -> dt.date | None:
    if not _ISO_DATE.match(value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def swap_dob(value: str | None) -> str:
    """The dob with day and month swapped, if that is a valid date and day != month; else ""."""
    dob = normalise_dob(value)
    d = _parse_date(dob)
    if d is None or d.day == d.month or d.day > 12:
        return ""
    return f"{d.year:04d}-{d.day:02d}-{d.month:02d}"


def birth_year_month(value: str | None) -> str:
    """Clear "YYYY-MM" of a valid YYYY-MM-DD date of birth; "" otherwise."""
    d = _parse_date(normalise_dob(value))
    return f"{d.year:04d}-{d.month:02d}" if d else ""


def soundex(name: str | None) -> str:
    """American Soundex of a normalised name ("ROBERT" -> "R163"); "" for an empty name."""
    name = normalise_name(name)
    if not name:
        return ""
    codes = {c: str(d) for d, letters in enumerate(
        ("AEIOUYHW", "BFPV", "CGJKQSXZ", "DT", "L", "MN", "R")) for c in letters}  # fmt: skip
    out = name[0]
    last = codes[name[0]]
    for c in name[1:]:
        code = codes[c]
        if code != "0" and code != last:
            out += code
        if c not in "HW":  # H and W do not separate letters with the same code
            last = code
        if len(out) == 4:
            break
    return out.ljust(4, "0")


# ---------------------------------------------------------------- keyed encodings
def token(key: bytes, field: str, value: str) -> str:
    """Keyed token of an already-normalised value; "" for an empty value."""
    if not value:
        return ""
    digest = hmac.digest(key, f"{field}|{value}".encode(), "sha256")
    return digest.hex()[:TOKEN_HEX_LENGTH]


def bigrams(name: str) -> list[str]:
    """The distinct padded bigrams of a normalised name, in order of first appearance."""
    padded = f"{BLOOM_PAD}{name}{BLOOM_PAD}"
    return list(dict.fromkeys(padded[i : i + 2] for i in range(len(padded) - 1)))


class Encoder:
    """Keyed encoders with per-value caches, so repeated values are hashed once."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._bigram_bits = lru_cache(maxsize=None)(self._bigram_int)

    def token(self, field: str, value: str) -> str:
        return token(self._key, field, value)

    def _bigram_int(self, gram: str) -> int:
        d = hmac.digest(self._key, f"bloom|{gram}".encode(), "sha256")
        h1 = int.from_bytes(d[0:8], "big")
        h2 = int.from_bytes(d[8:16], "big")
        bits = 0
        for i in range(BLOOM_HASHES):
            bits |= 1 << (BLOOM_BITS - 1 - (h1 + i * h2) % BLOOM_BITS)
        return bits

    def bloom(self, name: str) -> str:
        """Bloom filter (hex) of an already-normalised name; "" for an empty name."""
        if not name:
            return ""
        bits = 0
        for gram in bigrams(name):
            bits |= self._bigram_bits(gram)
        return format(bits, f"0{BLOOM_HEX_LENGTH}x")

    # ---- vectorised over pandas Series: every distinct value is encoded once
    def tokens(self, field: str, values: pd.Series) -> pd.Series:
        return map_distinct(values, lambda v: self.token(field, v))

    def blooms(self, names: pd.Series) -> pd.Series:
        return map_distinct(names, self.bloom)


def map_distinct(values: pd.Series, func) -> pd.Series:
    """`func` applied once per distinct value of a string Series, broadcast back (same index)."""
    codes, uniques = pd.factorize(values.fillna("").astype(str), sort=False)
    mapped = [func(u) for u in uniques]
    data = pd.array(mapped, dtype=object)[codes] if len(codes) else []
    return pd.Series(data, index=values.index, dtype=object)


# ---------------------------------------------------------------- similarity (tests, docs)
def popcount_hex(value: str) -> int:
    return int(value, 16).bit_count() if value else 0


def dice(a: str, b: str) -> float:
    """Dice coefficient of two Bloom filters in hex: 2|A and B| / (|A| + |B|); 0 if either empty."""
    if not a or not b:
        return 0.0
    na, nb = popcount_hex(a), popcount_hex(b)
    return 2 * (int(a, 16) & int(b, 16)).bit_count() / (na + nb) if na + nb else 0.0
