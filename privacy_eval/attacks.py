"""Attacks on an encoded people file, holding only that file and the public name list.

Owns the attacker's knowledge (`PublicNames`: Faker's en_GB first-name and surname lists with
their weights, loaded exactly as `synth.names.load_names` does, normalised as the contract does),
the per-version public facts an attacker reads in the contract (`SPECS`: which columns hold
name encodings, how they are compared), the attacks, and their scoring:

* `frequency_alignment`: rank a deterministic column's values by count, align the ranks with the
  public names' ranks by weight (optionally within groups of a clear column, e.g. birth year);
* `soundex_alignment`: the same for Soundex tokens, against the public Soundex-code frequencies;
* `pattern_mining`: Christen et al. (2017-18) style: mine frequent co-occurring bit-position sets
  (greedy maximal itemsets from the bit co-support matrix), label them with the public bigrams
  by frequency rank, decode each filter's bigrams and pick the public name that agrees best;
* `graph_matching`: Vidanage et al. (2019/2020) style: similarity graph of the most frequent
  encodings vs of the most frequent public names (bigram Dice); node features (frequency,
  degree at several thresholds, similarity histogram, top neighbour similarities), z-scored per
  graph, matched one-to-one (Hungarian, `scipy.optimize.linear_sum_assignment`);
* `cluster_frequency`: connected components of near-identical encodings (similarity at or above
  the contract's top band), component sizes aligned with public name frequencies.

Scoring (`score`): each attack yields per record a first-name and a surname guess (or none); a
record is recovered if either guess equals its true normalised name.  Chance is the same score
for the frequency-only guess made without looking at the encodings (the public list's most
common surname, and its most common first name for the record's clear sex); where an attack
makes no guess it falls back to that chance guess, so "beyond chance" is what the encodings
added.  Nothing here prints or logs a name, an encoding or a key.  Evaluation only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pseudonymiser import encoding as enc
from synth.names import load_names

Guesses = pd.Series  # per record: a normalised name, or None


# ---------------------------------------------------------------- the attacker's knowledge
@dataclass(frozen=True)
class Public:
    """One public list: distinct normalised names and their weights (sum 1), most common first
    (ties by name, so every ranking is deterministic)."""

    names: np.ndarray
    weights: np.ndarray

    @classmethod
    def of(cls, names: np.ndarray, weights: np.ndarray) -> Public:
        s = pd.Series(weights, index=[enc.normalise_name(n) for n in names]).groupby(level=0).sum()
        s = s[s.index != ""]
        order = sorted(s.index, key=lambda n: (-s[n], n))
        w = s[order].to_numpy(dtype=float)
        return cls(np.array(order, dtype=object), w / w.sum())


@dataclass(frozen=True)
class PublicNames:
    male: Public
    female: Public
    first: Public  # both sexes, each list half the weight
    surname: Public

    @classmethod
    def load(cls) -> PublicNames:
        lists = load_names()
        first = Public.of(
            np.concatenate([lists.male, lists.female]),
            np.concatenate([lists.male_p / 2, lists.female_p / 2]),
        )
        return cls(
            male=Public.of(lists.male, lists.male_p),
            female=Public.of(lists.female, lists.female_p),
            first=first,
            surname=Public.of(lists.surnames, lists.surname_p),
        )


@dataclass(frozen=True)
class Spec:
    """What the contract of one encoding version tells the attacker."""

    similarity: str  # "dice" or "hamming"
    near: float  # the similarity at or above which two encodings are "near-identical"
    hashes: int  # positions each bigram sets, as the contract states
    name_tokens: tuple[str, ...] = ()
    soundex_tokens: tuple[str, ...] = ()
    #: (first-name, surname) filter column pairs; each is attacked on its own
    filters: tuple[tuple[str, str], ...] = (("first_name_bf", "surname_bf"),)


SPECS: dict[str, Spec] = {
    "v1": Spec(
        "dice",
        0.8,
        enc.V1_BLOOM_HASHES,
        ("first_name_token", "surname_token"),
        ("first_name_soundex_token", "surname_soundex_token"),
    ),  # fmt: skip
    "v2": Spec(
        "hamming",
        0.55,
        enc.NAME_HASHES,
        filters=(("first_name_bf", "surname_bf"), ("first_name_nhs_bf", "surname_nhs_bf")),
    ),
}


# ---------------------------------------------------------------- scoring
def chance_guesses(file: pd.DataFrame, public: PublicNames) -> tuple[Guesses, Guesses]:
    sex = file["sex"].astype(str).str.upper()
    first = np.where(
        sex == "M", public.male.names[0], np.where(sex == "F", public.female.names[0],
                                                    public.first.names[0])
    )  # fmt: skip
    return (
        pd.Series(first, index=file.index, dtype=object),
        pd.Series(public.surname.names[0], index=file.index, dtype=object),
    )


def score(
    first: Guesses | None,
    surname: Guesses | None,
    chance: tuple[Guesses, Guesses],
    truth_first: pd.Series,
    truth_surname: pd.Series,
) -> float:
    """Share of records whose first name or surname guess (chance guess where none) is right."""
    f = chance[0] if first is None else first.where(first.notna(), chance[0])
    s = chance[1] if surname is None else surname.where(surname.notna(), chance[1])
    ok_f = (f.to_numpy() == truth_first.to_numpy()) & (truth_first.to_numpy() != "")
    ok_s = (s.to_numpy() == truth_surname.to_numpy()) & (truth_surname.to_numpy() != "")
    return float((ok_f | ok_s).mean())


@dataclass
class Result:
    attack: str
    version: str
    recovered: float
    chance: float
    seconds: float
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def beyond(self) -> float:
        return self.recovered - self.chance


# ---------------------------------------------------------------- helpers
def _present(values: pd.Series) -> pd.Series:
    v = values.astype("string").fillna("")
    return v.where(v != "", None).astype(object)


def _counts(values: pd.Series) -> pd.Series:
    """Value -> number of records, most frequent first, ties by value (deterministic)."""
    c = values.dropna().value_counts()
    return c.iloc[np.lexsort((c.index.to_numpy(dtype=str), -c.to_numpy()))]


def _align(counts: pd.Series, public: Public) -> dict[str, str]:
    """Rank i of the encoded values -> rank i of the public names."""
    n = min(len(counts), len(public.names))
    return dict(zip(counts.index[:n], public.names[:n], strict=True))


def bits(hex_values: np.ndarray) -> np.ndarray:
    """Equal-length hex strings -> bool matrix (rows x bits), bit p = byte p // 8, MSB first."""
    width = len(hex_values[0])
    buf = np.frombuffer(bytes.fromhex("".join(hex_values)), dtype=np.uint8)
    return np.unpackbits(buf.reshape(len(hex_values), width // 2), axis=1).astype(bool)


def _words(b: np.ndarray) -> np.ndarray:
    pad = (-b.shape[1]) % 64
    packed = np.packbits(np.pad(b, ((0, 0), (0, pad))), axis=1)
    return packed.view(">u8").astype(np.uint64)


def similarity_matrix(a: np.ndarray, b: np.ndarray, kind: str, n_bits: int) -> np.ndarray:
    """Pairwise similarity of two sets of filters (uint64 words): Dice or v2 Hamming."""
    out = np.empty((len(a), len(b)))
    na = np.bitwise_count(a).sum(axis=1)
    nb = np.bitwise_count(b).sum(axis=1)
    for i in range(0, len(a), 256):
        blk = a[i : i + 256, None, :]
        if kind == "dice":
            inter = np.bitwise_count(blk & b[None, :, :]).sum(axis=2)
            denom = na[i : i + 256, None] + nb[None, :]
            out[i : i + 256] = np.where(denom > 0, 2.0 * inter / np.maximum(denom, 1), 0.0)
        else:
            differ = np.bitwise_count(blk ^ b[None, :, :]).sum(axis=2)
            out[i : i + 256] = np.maximum(0.0, 1.0 - 2.0 * differ / n_bits)
    return out


def _bigram_sets(names: np.ndarray) -> list[set[str]]:
    return [set(enc.bigrams(n)) for n in names]


def bigram_dice(names: np.ndarray) -> np.ndarray:
    """Pairwise Dice of the names' padded bigram sets (the plaintext similarity graph)."""
    grams = _bigram_sets(names)
    vocab = {g: i for i, g in enumerate(sorted(set().union(*grams)))}
    m = np.zeros((len(names), len(vocab)))
    for r, gs in enumerate(grams):
        m[r, [vocab[g] for g in gs]] = 1.0
    inter = m @ m.T
    size = m.sum(axis=1)
    return 2.0 * inter / (size[:, None] + size[None, :])


def _broadcast(values: pd.Series, mapping: dict[str, str]) -> Guesses:
    return values.map(mapping).astype(object).where(values.notna(), None)


# ---------------------------------------------------------------- attacks
def frequency_alignment(
    values: pd.Series, public: Public, groups: pd.Series | None = None
) -> Guesses:
    """Guess each record's name by aligning value counts with public frequencies, within each
    group of `groups` (a clear column) if given."""
    values = _present(values)
    if groups is None:
        return _broadcast(values, _align(_counts(values), public))
    out = pd.Series(None, index=values.index, dtype=object)
    for _, idx in values.groupby(groups.fillna(""), sort=True).groups.items():
        v = values.loc[idx]
        out.loc[idx] = _broadcast(v, _align(_counts(v), public))
    return out


def soundex_alignment(values: pd.Series, public: Public) -> Guesses:
    """Align Soundex-token counts with the public Soundex-code frequencies; guess the most
    common public name with the aligned code."""
    codes = pd.Series(public.weights, index=[enc.soundex(n) for n in public.names])
    by_code = codes.groupby(level=0).sum()
    order = sorted(by_code.index, key=lambda c: (-by_code[c], c))
    code_public = Public(np.array(order, dtype=object), by_code[order].to_numpy())
    best_name = {}
    for n in public.names:  # most common first
        best_name.setdefault(enc.soundex(n), n)
    code_guess = frequency_alignment(values, code_public)
    return code_guess.map(best_name).astype(object).where(code_guess.notna(), None)


def pattern_mining(
    values: pd.Series, public: Public, hashes: int, closure: float = 0.9, seeds: int = 4000,
    max_sets: int = 1500,
) -> Guesses:  # fmt: skip
    """Frequent bit-position sets -> bigrams -> names (see the module docstring).

    Mining: (a) the `seeds` position pairs of highest co-support, each closed to the set of
    positions set in at least `closure` of the records where both are set (a pair inside one
    bigram's positions closes to that bigram's whole set); (b) the position sets the contract's
    construction allows (`progression_sets`).  Sets of `hashes - 2` to `hashes` positions (the
    contract says how many a bigram sets; a few collide) are kept, most supported first.
    Sets that are only chance combinations of other sets are dropped (`_not_explained`).
    Labelling: `_label_sets` (frequencies and co-occurrences vs the public bigram statistics).
    Decoding: each filter becomes the public name whose bigrams agree best with the labelled
    sets present and absent (the most common such name on ties)."""
    values = _present(values)
    counts = _counts(values)
    none = pd.Series(None, index=values.index, dtype=object)
    if counts.empty:
        return none
    x = bits(counts.index.to_numpy(dtype=str)).astype(np.float32)
    w = counts.to_numpy(dtype=np.float32)
    co = np.triu((x * w[:, None]).T @ x, 1)
    flat = np.argsort(-co, axis=None, kind="stable")[:seeds]
    pi, pj = np.unravel_index(flat, co.shape)
    sets: dict[tuple[int, ...], float] = {}  # position set -> records holding it
    for b in range(0, len(pi), 250):
        i, j = pi[b : b + 250], pj[b : b + 250]
        masks = x[:, i] * x[:, j]  # filters x pairs
        sup = w @ masks
        cond = ((masks * w[:, None]).T @ x) / np.maximum(sup, 1.0)[:, None]
        for row in cond >= closure:
            key = tuple(np.flatnonzero(row).tolist())
            if hashes - 2 <= len(key) <= hashes and key not in sets:
                sets[key] = float(w @ x[:, list(key)].min(axis=1))
    for key, sup in progression_sets(x, w, hashes).items():
        sets.setdefault(key, sup)
    found = sorted(sets, key=lambda k: (-sets[k], k))[:max_sets]
    if not found:
        return none
    present = np.stack([x[:, list(k)].min(axis=1) for k in found], axis=1)  # filters x sets
    keep = _not_explained(found, present > 0)
    found, present = [k for k, ok in zip(found, keep, strict=True) if ok], present[:, keep]
    grams = _bigram_sets(public.names)
    vocab = sorted(set().union(*grams))
    has_all = np.array([[g in gs for g in vocab] for gs in grams], dtype=np.float32)
    if len(found) > len(vocab):  # more sets than bigrams: keep the most supported
        found, present = found[: len(vocab)], present[:, : len(vocab)]
    labels = _label_sets(present, w, has_all, public.weights)
    has = has_all[:, labels]
    mismatch = present @ (1 - has).T + (1 - present) @ has.T
    rank_penalty = np.arange(len(public.names)) / (10.0 * len(public.names))
    best = np.argmin(mismatch + rank_penalty[None, :], axis=1)
    mapping = dict(zip(counts.index, public.names[best], strict=True))
    return _broadcast(values, mapping)


def _not_explained(sets: list[tuple[int, ...]], present: np.ndarray) -> np.ndarray:
    """False for a set whose positions, in every filter holding it, are all covered by the other
    sets that filter holds (a chance combination of other bigrams, not a bigram of its own)."""
    keep = np.zeros(len(sets), dtype=bool)
    for si, k in enumerate(sets):
        for fi in np.flatnonzero(present[:, si]):
            cover: set[int] = set()
            for t in np.flatnonzero(present[fi]):
                if t != si:
                    cover.update(sets[t])
            if not set(k) <= cover:
                keep[si] = True
                break
    return keep


def _label_sets(
    present: np.ndarray, w: np.ndarray, has: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Label mined sets with bigrams (indices into `has`'s columns), one each, greedily from the
    most frequent set: the unused bigram whose public frequency and public co-occurrence with
    the bigrams already given (to the sets already labelled) are closest to the set's observed
    frequency and co-occurrences (a substitution-cipher style alignment)."""
    total = float(w.sum())
    f_obs = (w @ present) / total
    j_obs = ((present * w[:, None]).T @ present) / total
    f_pub = weights @ has
    j_pub = (has * weights[:, None]).T @ has
    order = np.argsort(-f_obs, kind="stable")
    labels = np.full(present.shape[1], -1)
    used = np.zeros(has.shape[1], dtype=bool)
    done: list[int] = []
    for a in order:
        cost = np.abs(f_pub - f_obs[a]) / max(f_obs[a], 1e-9)
        if done:
            lab = labels[done]
            cost = cost + np.abs(j_pub[:, lab] - j_obs[a, done][None, :]).sum(axis=1) / max(
                f_obs[a], 1e-9
            )
        cost[used] = np.inf
        g = int(np.argmin(cost))
        labels[a] = g
        used[g] = True
        done.append(int(a))
    return labels


def progression_sets(x: np.ndarray, w: np.ndarray, hashes: int) -> dict[tuple[int, ...], float]:
    """Candidate bigram position sets a double-hashing construction allows (the v1 contract):
    {(a + i * b) mod L : i < hashes} for every a, b, kept when all its positions are set in
    filters of at least 2 records.  Run unchanged on any version: where positions are drawn
    independently (v2) only chance progressions remain."""
    n_bits = x.shape[1]
    reps = np.repeat(np.arange(len(w)), w.astype(int))  # one row per record
    cols = np.packbits(x.astype(bool)[reps].T, axis=1)  # positions x packed records
    out: dict[tuple[int, ...], float] = {}
    for b in range(1, n_bits):
        alive = np.arange(n_bits)  # start positions a whose progression is still supported
        acc = cols
        support = np.zeros(0)
        for i in range(1, hashes):
            acc = acc & cols[(alive + i * b) % n_bits]
            support = np.bitwise_count(acc).sum(axis=1)
            keep = support >= 2
            alive, acc, support = alive[keep], acc[keep], support[keep]
            if not len(alive):
                break
        for a, sup in zip(alive, support, strict=True):
            key = tuple(sorted({int((a + i * b) % n_bits) for i in range(hashes)}))
            out[key] = max(out.get(key, 0.0), float(sup))
    return out


def _features(sim: np.ndarray, freq: np.ndarray) -> np.ndarray:
    s = sim.copy()
    np.fill_diagonal(s, 0.0)
    n = len(s)
    feats = [freq / freq.sum()]
    feats += [(s >= t).sum(axis=1) / n for t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)]
    top = -np.sort(-s, axis=1)[:, :5]
    feats += [top[:, k] for k in range(top.shape[1])]
    hist = np.stack([np.histogram(row, bins=8, range=(0.2, 1.0))[0] / n for row in s])
    f = np.column_stack([*feats, hist])
    sd = f.std(axis=0)
    return (f - f.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def graph_matching(values: pd.Series, public: Public, kind: str, nodes: int = 600) -> Guesses:
    """Similarity-graph node-feature matching (see the module docstring)."""
    values = _present(values)
    counts = _counts(values)
    n = min(nodes, len(counts), len(public.names))
    if n < 2:
        return pd.Series(None, index=values.index, dtype=object)
    hexes = counts.index[:n].to_numpy(dtype=str)
    b = bits(hexes)
    words = _words(b)
    enc_sim = similarity_matrix(words, words, kind, b.shape[1])
    fe = _features(enc_sim, counts.to_numpy(dtype=float)[:n])
    fp = _features(bigram_dice(public.names[:n]), public.weights[:n])
    cost = ((fe[:, None, :] - fp[None, :, :]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    mapping = {hexes[r]: public.names[c] for r, c in zip(rows, cols, strict=True)}
    return _broadcast(values, mapping)


#: above this many distinct encodings, near pairs are searched within clear birth year-month
#: blocks (lossless for dob-salted encodings, whose salt fixes the year-month up to a swap)
EXHAUSTIVE_DISTINCT = 12_000


def cluster_frequency(
    values: pd.Series, public: Public, kind: str, near: float, year_month: pd.Series
) -> Guesses:
    """Components of near-identical encodings, sizes aligned with public frequencies."""
    values = _present(values)
    counts = _counts(values)
    if counts.empty:
        return pd.Series(None, index=values.index, dtype=object)
    hexes = counts.index.to_numpy(dtype=str)
    b = bits(hexes)
    words = _words(b)
    if len(hexes) <= EXHAUSTIVE_DISTINCT:
        blocks = [np.arange(len(hexes))]
    else:
        first_ym = year_month[values.notna()].groupby(values.dropna()).first()
        ym = first_ym.reindex(hexes).fillna("").to_numpy(dtype=str)
        blocks = [np.flatnonzero(ym == g) for g in np.unique(ym)]
    rows, cols = [], []
    for blk in blocks:
        sim = similarity_matrix(words[blk], words[blk], kind, b.shape[1])
        i, j = np.nonzero(np.triu(sim >= near, 1))
        rows.append(blk[i])
        cols.append(blk[j])
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r)), (r, c)), shape=(len(hexes), len(hexes)))
    _, label = connected_components(graph, directed=False)
    size = pd.Series(counts.to_numpy(), index=label).groupby(level=0).sum()
    order = sorted(size.index, key=lambda k: (-size[k], k))
    name_of = dict(zip(order, public.names, strict=False))
    mapping = {h: name_of.get(lbl) for h, lbl in zip(hexes, label, strict=True)}
    return _broadcast(values, mapping)


# ---------------------------------------------------------------- the whole bench
def _timed(func: Callable[[], tuple[Guesses | None, Guesses | None]]):
    t = time.perf_counter()
    first, surname = func()
    return first, surname, time.perf_counter() - t


def _filter_plans(
    file: pd.DataFrame, fn_col: str, sn_col: str, tag: str, spec: Spec, public: PublicNames,
    year: pd.Series, ym: pd.Series,
) -> dict[str, Callable[[], tuple[Guesses | None, Guesses | None]]]:  # fmt: skip
    """The attacks on one pair of name-filter columns."""
    fn, sn = file[fn_col], file[sn_col]
    return {
        f"frequency: whole name filters{tag}": lambda: (
            frequency_alignment(fn, public.first),
            frequency_alignment(sn, public.surname),
        ),
        f"frequency: name filters within birth year{tag}": lambda: (
            frequency_alignment(fn, public.first, groups=year),
            frequency_alignment(sn, public.surname, groups=year),
        ),
        f"pattern mining (Christen){tag}": lambda: (
            pattern_mining(fn, public.first, spec.hashes),
            pattern_mining(sn, public.surname, spec.hashes),
        ),
        f"graph matching (Vidanage){tag}": lambda: (
            graph_matching(fn, public.first, spec.similarity),
            graph_matching(sn, public.surname, spec.similarity),
        ),
        f"cluster then frequency{tag}": lambda: (
            cluster_frequency(fn, public.first, spec.similarity, spec.near, ym),
            cluster_frequency(sn, public.surname, spec.similarity, spec.near, ym),
        ),
    }


def run_attacks(
    file: pd.DataFrame,
    version: str,
    truth_first: pd.Series,
    truth_surname: pd.Series,
    public: PublicNames | None = None,
    attacks: tuple[str, ...] | None = None,
) -> list[Result]:
    """Every attack on one encoded people file; figures only."""
    public = public or PublicNames.load()
    spec = SPECS[version]
    chance = chance_guesses(file, public)
    base = score(None, None, chance, truth_first, truth_surname)
    year = file["birth_year_month"].astype(str).str.slice(0, 4)
    ym = file["birth_year_month"]
    plans: dict[str, Callable[[], tuple[Guesses | None, Guesses | None]]] = {}
    if spec.name_tokens:
        plans["frequency: name tokens"] = lambda: (
            frequency_alignment(file[spec.name_tokens[0]], public.first),
            frequency_alignment(file[spec.name_tokens[1]], public.surname),
        )
    if spec.soundex_tokens:
        plans["frequency: Soundex tokens"] = lambda: (
            soundex_alignment(file[spec.soundex_tokens[0]], public.first),
            soundex_alignment(file[spec.soundex_tokens[1]], public.surname),
        )
    for fn_col, sn_col in spec.filters:
        tag = "" if fn_col == "first_name_bf" else f" [{fn_col.removeprefix('first_name_')}]"
        plans.update(_filter_plans(file, fn_col, sn_col, tag, spec, public, year, ym))
    out = []
    for name, plan in plans.items():
        if attacks is not None and name not in attacks:
            continue
        first, surname, seconds = _timed(plan)
        out.append(
            Result(name, version, score(first, surname, chance, truth_first, truth_surname),
                   base, seconds)
        )  # fmt: skip
    return out


#: deterministic columns other than names: why a frequency attack recovers nothing there
OTHER_TOKENS: dict[str, str] = {
    "record_token": "unique per record: every value has count 1, nothing to align",
    "dob_token": "no public distribution of exact birth dates (births ~uniform over days); "
    "the clear birth_year_month already gives year and month",
    "dob_swap_token": "as dob_token",
    "postcode_token": "no public distribution of children per full postcode in the synthetic "
    "county; the clear postcode_sector is already shown",
    "nhs_token": "one value per child (uniform): counts only say how many agencies hold the child",
    "upn_token": "as nhs_token",
}


def other_token_counts(file: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per other deterministic column: distinct values and the largest value's share (figures
    showing there is no frequency structure to align)."""
    out = {}
    for col in OTHER_TOKENS:
        if col not in file:
            continue
        c = _counts(_present(file[col]))
        out[col] = {
            "distinct": int(len(c)),
            "max_share": float(c.iloc[0] / c.sum()) if len(c) else 0.0,
        }
    return out
