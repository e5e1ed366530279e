"""The agency-side stages of the embedded demo (`keygen`, `pseudonymise`): the stand-alone
`pseudonymiser` package's functions called with the demo's paths from `Settings`.

A real agency runs `joinedup-pseudonymise` (`pseudonymiser.cli`) with its own paths instead;
nothing here touches a store.
"""

from __future__ import annotations

from pathlib import Path

from joinedup.config import Settings
from pseudonymiser import keys
from pseudonymiser.pseudonymise import pseudonymise_files


def keygen(settings: Settings, synthetic_seed: int | None = None, **options: object) -> dict:
    """Stage `keygen`: make `settings.key_file` if absent (random; or, for the synthetic demo
    county only, derived from `synthetic_seed` so that demo runs repeat exactly); never
    overwrites or prints the key."""
    path = settings.key_file
    created = False
    if not path.exists():
        if synthetic_seed is None:
            keys.generate_key(path)
        else:
            keys.derive_synthetic_key(path, synthetic_seed)
        created = True
    keys.load_key(path)  # fails loudly if an existing file is unusable
    return {
        "key_file": str(path),
        "created": created,
        "kind": "random" if synthetic_seed is None else "synthetic, derived from the seed",
    }


def pseudonymise(
    settings: Settings,
    key_file: str | Path | None = None,
    source: str | Path | None = None,
    dest: str | Path | None = None,
    dest_linkage: str | Path | None = None,
    areas: str | Path | None = None,
    **options: object,
) -> dict:
    """Stage `pseudonymise`: the demo agencies' raw extracts -> the hub's and the linkage unit's
    landing folders (or the folders given)."""
    return pseudonymise_files(
        key_file=key_file or settings.key_file,
        source=source or settings.agency_dir,
        dest=dest or settings.for_unit("hub").landing_dir,
        dest_linkage=dest_linkage or settings.for_unit("linkage").landing_dir,
        areas=areas or settings.reference_dir / "areas.csv",
    )
