"""Names for the synthetic county: first names and surnames (Faker's en_GB lists, sampled with
numpy), common UK nicknames, vectorised-enough typos, and fictional ward names that share no word
with any person name used here.

Owns: `NameLists`, `load_names`, `NICKNAMES`, `typo`, `ward_names`, `all_name_words`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from faker.providers.person.en_GB import Provider as _EnGB

#: formal first name -> a common UK short form (both directions appear in real records)
NICKNAMES: dict[str, str] = {
    "William": "Will",
    "Elizabeth": "Liz",
    "Robert": "Rob",
    "Thomas": "Tom",
    "James": "Jim",
    "Michael": "Mike",
    "Christopher": "Chris",
    "Daniel": "Dan",
    "Matthew": "Matt",
    "Joseph": "Joe",
    "Samuel": "Sam",
    "Benjamin": "Ben",
    "Alexander": "Alex",
    "Nicholas": "Nick",
    "Jonathan": "Jon",
    "Anthony": "Tony",
    "Andrew": "Andy",
    "Richard": "Rich",
    "Edward": "Ed",
    "Stephen": "Steve",
    "Steven": "Steve",
    "Timothy": "Tim",
    "Peter": "Pete",
    "David": "Dave",
    "Charles": "Charlie",
    "Frederick": "Fred",
    "Harry": "Haz",
    "Oliver": "Olly",
    "Joshua": "Josh",
    "Jacob": "Jake",
    "Katherine": "Kate",
    "Catherine": "Cathy",
    "Victoria": "Vicky",
    "Rebecca": "Becky",
    "Jennifer": "Jen",
    "Jessica": "Jess",
    "Samantha": "Sam",
    "Margaret": "Maggie",
    "Deborah": "Debbie",
    "Susan": "Sue",
    "Patricia": "Pat",
    "Alexandra": "Alex",
    "Eleanor": "Ellie",
    "Abigail": "Abby",
    "Charlotte": "Lottie",
    "Christine": "Chris",
    "Amanda": "Mandy",
    "Natalie": "Nat",
    "Kimberley": "Kim",
}


def _as_weighted(values: Sequence[str] | Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Faker keeps some lists as weighted OrderedDicts and some as plain tuples (uniform)."""
    if isinstance(values, Mapping):
        names = np.array(list(values.keys()), dtype=object)
        w = np.array(list(values.values()), dtype=float)
    else:
        names = np.array(list(dict.fromkeys(values)), dtype=object)
        w = np.ones(len(names))
    return names, w / w.sum()


@dataclass(frozen=True)
class NameLists:
    male: np.ndarray
    male_p: np.ndarray
    female: np.ndarray
    female_p: np.ndarray
    surnames: np.ndarray
    surname_p: np.ndarray

    def first(self, rng: np.random.Generator, sex: np.ndarray) -> np.ndarray:
        """One first name per entry of `sex` ('M'/'F'), sampled by the lists' weights."""
        out = np.empty(len(sex), dtype=object)
        m = sex == "M"
        out[m] = rng.choice(self.male, size=int(m.sum()), p=self.male_p)
        out[~m] = rng.choice(self.female, size=int((~m).sum()), p=self.female_p)
        return out

    def surname(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.choice(self.surnames, size=n, p=self.surname_p)


def load_names() -> NameLists:
    male, male_p = _as_weighted(_EnGB.first_names_male)
    female, female_p = _as_weighted(_EnGB.first_names_female)
    # a few Faker surnames are hyphenated or multi-word; keep simple single words
    sn, sp = _as_weighted(_EnGB.last_names)
    keep = np.array([s.isalpha() for s in sn])
    sn, sp = sn[keep], sp[keep] / sp[keep].sum()
    return NameLists(male, male_p, female, female_p, sn, sp)


def all_name_words(names: NameLists | None = None) -> set[str]:
    """Every word (lower case) of every first name, surname and nickname the generator can emit."""
    names = names or load_names()
    words: set[str] = set()
    for arr in (names.male, names.female, names.surnames):
        for v in arr:
            words.update(w.lower() for w in str(v).replace("-", " ").split())
    for k, v in NICKNAMES.items():
        words.update((k.lower(), v.lower()))
    return words


_LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))
_KEYBOARD_NEIGHBOURS = {
    "a": "sqz",
    "b": "vn",
    "c": "xv",
    "d": "sf",
    "e": "wr",
    "f": "dg",
    "g": "fh",
    "h": "gj",
    "i": "uo",
    "j": "hk",
    "k": "jl",
    "l": "k",
    "m": "n",
    "n": "bm",
    "o": "ip",
    "p": "o",
    "q": "wa",
    "r": "et",
    "s": "ad",
    "t": "ry",
    "u": "yi",
    "v": "cb",
    "w": "qe",
    "x": "zc",
    "y": "tu",
    "z": "x",
}


def typo(word: str, rng: np.random.Generator) -> str:
    """One keyboard-style error: substitution, transposition, deletion or insertion.

    Never touches the first letter (blocking keys often use it, and real typos rarely do)."""
    if len(word) < 3:
        return word
    kind = int(rng.integers(4))
    pos = int(rng.integers(1, len(word)))
    c = word[pos].lower()
    if kind == 0:  # substitution by a keyboard neighbour
        nb = _KEYBOARD_NEIGHBOURS.get(c, "e")
        return word[:pos] + nb[int(rng.integers(len(nb)))] + word[pos + 1 :]
    if kind == 1 and pos < len(word) - 1:  # transposition
        return word[:pos] + word[pos + 1] + word[pos] + word[pos + 2 :]
    if kind == 2 and len(word) > 3:  # deletion
        return word[:pos] + word[pos + 1 :]
    return word[:pos] + str(_LETTERS[int(rng.integers(26))]) + word[pos:]  # insertion


def apply_typos(values: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`values` with a typo in the entries where `mask` (a loop only over those few entries)."""
    out = values.copy()
    for i in np.flatnonzero(mask):
        v = out[i]
        if isinstance(v, str) and v:
            out[i] = typo(v, rng)
    return out


_STEMS = (
    "Ash",
    "Brack",
    "Cold",
    "Elm",
    "Fen",
    "Gorse",
    "Harrow",
    "Kettle",
    "Lark",
    "Mire",
    "Nether",
    "Oak",
    "Pike",
    "Quarry",
    "Rush",
    "Sedge",
    "Thorn",
    "Under",
    "Wold",
    "Yarrow",
    "Beck",
    "Clough",
    "Dunn",
    "Fold",
    "Gill",
    "Holm",
    "Ings",
    "Knott",
    "Lyth",
    "Moss",
    "Ridd",
    "Scar",
    "Tarn",
    "Wray",
    "Birk",
    "Crag",
)
_SUFFIXES = (
    "by",
    "thorpe",
    "wick",
    "ley",
    "stead",
    "combe",
    "dale",
    "ham",
    "holme",
    "ton",
    "worth",
    "field",
    "bridge",
    "mere",
    "gate",
    "hurst",
)


def ward_names(n: int, rng: np.random.Generator, names: NameLists | None = None) -> list[str]:
    """`n` distinct fictional one-word place names (e.g. "Sedgethorpe"), none equal to any name word."""
    bad = all_name_words(names)
    pool = sorted({s + x for s in _STEMS for x in _SUFFIXES} - {w.title() for w in bad})
    pool = [p for p in pool if p.lower() not in bad]
    if n > len(pool):
        # big counties: qualify with a compass word, which is then checked too
        extra = [f"{p} {q}" for q in ("Nether", "Over", "Upper", "Lower") for p in pool]
        pool += [e for e in extra if not any(w.lower() in bad for w in e.split())]
    if n > len(pool):
        raise ValueError(f"only {len(pool)} ward names available, {n} asked")
    idx = rng.choice(len(pool), size=n, replace=False)
    return [pool[i] for i in idx]
