"""Encodings of identifiers: normalisation, keyed tokens and hardened keyed name filters.

Owns contract encoding v2 (what agencies send) and keeps v1 (retired; `token_v1`,
`EncoderV1`) only so the evaluation-only attack benchmark can attack it.  Everything is
deterministic given the scheme key, so two agencies holding the same key encode the same person
the same way.  `docs/data-contract.md` §4 specifies these rules for agencies that write their
own pseudonymiser; keep the two in step.

v2 in short (see the contract for the exact byte-level rules):

- field keys: HKDF-SHA256(scheme key, salt none, info = field label, 32 bytes), one per field;
- token(field, value) = first TOKEN_HEX_LENGTH hex chars of HMAC-SHA256(field key, value);
- name filter of a normalised name under a salt (the date of birth with day and month in
  ascending order, so a day/month swap keeps the salt): BLOOM_BITS bits; each distinct padded
  bigram sets NAME_HASHES positions drawn from the HMAC stream of (field key, salt|bigram)
  (independent per bigram and salt, no double hashing); then the diffusion layer of Armknecht
  et al. (2023): output bit j = XOR of DIFFUSION_T input bits at key-chosen positions.  Compared
  by Hamming similarity.  Empty name or no valid dob -> empty filter.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import unicodedata
from functools import lru_cache

import numpy as np
import pandas as pd
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pseudonymiser.contract import BLOOM_BITS, TOKEN_HEX_LENGTH

#: v1 (retired): bits and hash functions (double hashing) per bigram
V1_BLOOM_BITS = 512
V1_BLOOM_HASHES = 10
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
def token_v1(key: bytes, field: str, value: str) -> str:
    """v1 (retired) keyed token of an already-normalised value; "" for an empty value."""
    if not value:
        return ""
    digest = hmac.digest(key, f"{field}|{value}".encode(), "sha256")
    return digest.hex()[:TOKEN_HEX_LENGTH]


def bigrams(name: str) -> list[str]:
    """The distinct padded bigrams of a normalised name, in order of first appearance."""
    padded = f"{BLOOM_PAD}{name}{BLOOM_PAD}"
    return list(dict.fromkeys(padded[i : i + 2] for i in range(len(padded) - 1)))


class EncoderV1:
    """v1 (retired) keyed encoders: one key for every field, double hashing keyed on the bigram
    alone.  Kept only so the attack benchmark can attack it; never used to write contract files."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._bigram_bits = lru_cache(maxsize=None)(self._bigram_int)

    def token(self, field: str, value: str) -> str:
        return token_v1(self._key, field, value)

    def _bigram_int(self, gram: str) -> int:
        d = hmac.digest(self._key, f"bloom|{gram}".encode(), "sha256")
        h1 = int.from_bytes(d[0:8], "big")
        h2 = int.from_bytes(d[8:16], "big")
        bits = 0
        for i in range(V1_BLOOM_HASHES):
            bits |= 1 << (V1_BLOOM_BITS - 1 - (h1 + i * h2) % V1_BLOOM_BITS)
        return bits

    def bloom(self, name: str) -> str:
        """Bloom filter (hex) of an already-normalised name; "" for an empty name."""
        if not name:
            return ""
        bits = 0
        for gram in bigrams(name):
            bits |= self._bigram_bits(gram)
        return format(bits, f"0{V1_BLOOM_BITS // 4}x")

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


# ================================================================ v2 (the contract)
#: positions each distinct bigram sets in a v2 name filter (before diffusion)
NAME_HASHES = 16
#: input bits XOR-ed into each output bit by the diffusion layer
DIFFUSION_T = 4
#: the HKDF labels (`info`) of the v2 field keys, one per encoded field
FIELD_LABELS: tuple[str, ...] = (
    "record",
    "event",
    "dob",
    "postcode",
    "nhs",
    "upn",
    "first_name_bf",
    "surname_bf",
)
NAME_FIELDS: tuple[str, ...] = ("first_name_bf", "surname_bf")
#: 16-bit stream values at or above this are skipped, so positions mod BLOOM_BITS are unbiased
_STREAM_LIMIT = (65536 // BLOOM_BITS) * BLOOM_BITS


def field_key(key: bytes, label: str) -> bytes:
    """The v2 key of one field: HKDF-SHA256 (RFC 5869, no salt) of the scheme key, info = label."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label.encode()).derive(key)


def token(fkey: bytes, value: str) -> str:
    """v2 token of an already-normalised value under a field key; "" for an empty value."""
    if not value:
        return ""
    return hmac.digest(fkey, value.encode(), "sha256").hex()[:TOKEN_HEX_LENGTH]


def positions(fkey: bytes, message: str, count: int, distinct: bool = False) -> list[int]:
    """`count` bit positions in [0, BLOOM_BITS) read from the keyed stream
    HMAC-SHA256(fkey, message + "|0") || HMAC-SHA256(fkey, message + "|1") || ...: 16-bit
    big-endian values, those >= _STREAM_LIMIT skipped, each taken mod BLOOM_BITS (and, if
    `distinct`, a position already taken skipped)."""
    out: list[int] = []
    block = 0
    while len(out) < count:
        d = hmac.digest(fkey, f"{message}|{block}".encode(), "sha256")
        block += 1
        for i in range(0, len(d), 2):
            v = int.from_bytes(d[i : i + 2], "big")
            if v >= _STREAM_LIMIT:
                continue
            p = v % BLOOM_BITS
            if distinct and p in out:
                continue
            out.append(p)
            if len(out) == count:
                break
    return out


def name_salt(dob: str | None) -> str:
    """The salt of the v2 name filters: a valid dob as "YYYY-LO-HI", LO/HI its month and day in
    ascending order (so a day/month swap keeps the salt); "" when the dob is not a valid date."""
    d = _parse_date(normalise_dob(dob))
    if d is None:
        return ""
    lo, hi = sorted((d.month, d.day))
    return f"{d.year:04d}-{lo:02d}-{hi:02d}"


def nhs_salt(nhs: str | None) -> str:
    """The salt of the NHS-salted v2 name filters: "nhs:" + the NHS number's digits; "" when
    there are none."""
    digits = normalise_nhs(nhs)
    return f"nhs:{digits}" if digits else ""


class Encoder:
    """v2 encoders (the contract): per-field HKDF keys, tokens, salted diffused name filters.
    Per-value caches, so each repeated value (or name and salt) is hashed once."""

    def __init__(self, key: bytes) -> None:
        self._keys = {label: field_key(key, label) for label in FIELD_LABELS}
        self._gram_cache: dict[tuple[str, str, str], list[int]] = {}
        self._diffusion = {
            f: np.array(
                [positions(self._keys[f], f"diffusion|{j}", DIFFUSION_T, distinct=True)
                 for j in range(BLOOM_BITS)], dtype=np.intp)
            for f in NAME_FIELDS
        }  # fmt: skip

    def token(self, field: str, value: str) -> str:
        return token(self._keys[field], value)

    def _gram_positions(self, field: str, salt: str, gram: str) -> list[int]:
        k = (field, salt, gram)
        if k not in self._gram_cache:
            self._gram_cache[k] = positions(self._keys[field], f"{salt}|{gram}", NAME_HASHES)
        return self._gram_cache[k]

    def raw_bits(self, field: str, name: str, salt: str) -> np.ndarray:
        """The filter before diffusion (bool array of BLOOM_BITS); evaluation and tests only."""
        bits = np.zeros(BLOOM_BITS, dtype=bool)
        for gram in bigrams(name):
            bits[self._gram_positions(field, salt, gram)] = True
        return bits

    def filter_bits(self, field: str, name: str, salt: str) -> np.ndarray:
        """The diffused filter as a bool array of BLOOM_BITS."""
        raw = self.raw_bits(field, name, salt)
        return np.bitwise_xor.reduce(raw[self._diffusion[field]], axis=1)

    def bloom(self, field: str, name: str, salt: str) -> str:
        """The v2 name filter (hex) of an already-normalised name under a salt (`name_salt`);
        "" when the name or the salt is empty."""
        if not name or not salt:
            return ""
        return bits_to_hex(self.filter_bits(field, name, salt))

    # ---- vectorised over pandas Series: every distinct value is encoded once
    def tokens(self, field: str, values: pd.Series) -> pd.Series:
        return map_distinct(values, lambda v: self.token(field, v))

    def blooms(self, field: str, names: pd.Series, salts: pd.Series) -> pd.Series:
        pairs = names.fillna("").astype(str) + "|" + salts.fillna("").astype(str)
        return map_distinct(pairs, lambda v: self.bloom(field, *v.split("|")))


def bits_to_hex(bits: np.ndarray) -> str:
    """Bool bit array -> lowercase hex, bit p = byte p // 8, mask 0x80 >> (p % 8)."""
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


def hex_to_bits(value: str) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(value), dtype=np.uint8)).astype(bool)


def hamming_similarity(a: str, b: str) -> float:
    """v2 similarity of two name filters in hex: 1 - 2 * (differing bits) / BLOOM_BITS, floored
    at 0 (unrelated filters differ in about half their bits, so they score about 0); 0 if either
    is empty."""
    if not a or not b:
        return 0.0
    differ = (int(a, 16) ^ int(b, 16)).bit_count()
    return max(0.0, 1.0 - 2.0 * differ / (len(a) * 4))
