"""Where everything lives: one `Settings` object, configured by environment variables.

All data the pipeline makes (agency-side raw extracts, landing files, warehouse, quarantine,
outputs, the demo key, Airflow's home) lives under one home directory, `JOINEDUP_HOME`
(default: `var/` under the project, ignored by git).  Nothing else is written anywhere.

Separation of functions: a `Settings` belongs to one *unit*.  The analytics hub (`unit="hub"`,
the default) and the linkage unit (`unit="linkage"`, `settings.for_unit("linkage")`) each have
their own landing folder, store, quarantine folder, outputs and Great Expectations project; the
path properties answer for the settings' own unit only, so a stage holding hub settings cannot
name the linkage unit's store, and the reverse.  In the embedded default both live under one
home (the linkage unit under `linkage_unit/`); in a deployment they are different machines.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: the units of a deployment: the analytics hub and the linkage unit
UNITS: tuple[str, ...] = ("hub", "linkage")


def _default_home() -> Path:
    env = os.environ.get("JOINEDUP_HOME")
    return Path(env).resolve() if env else PROJECT_ROOT / "var"


@dataclass(frozen=True)
class Settings:
    """Every path and tunable of a pipeline run.  Build with `Settings.from_env()`."""

    home: Path = field(default_factory=_default_home)
    #: months of history the synthetic county has, and the extract date (first of a month)
    extract_date: str = "2026-10-01"
    #: how many children the council can act on per month (capacity for precision@k)
    capacity_per_month: int = 50
    #: suppress any published aggregate count below this
    small_number_threshold: int = 10
    seed: int = 42
    #: which unit these settings belong to: "hub" (analytics hub) or "linkage" (linkage unit)
    unit: str = "hub"

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unknown unit {self.unit!r}; expected one of {', '.join(UNITS)}")

    def for_unit(self, unit: str) -> Settings:
        """The same configuration for another unit (its own stores and folders)."""
        return replace(self, unit=unit)

    @classmethod
    def from_env(cls, home: str | Path | None = None) -> Settings:
        kwargs: dict = {}
        if home is not None:
            kwargs["home"] = Path(home).resolve()
        if os.environ.get("JOINEDUP_CAPACITY"):
            kwargs["capacity_per_month"] = int(os.environ["JOINEDUP_CAPACITY"])
        if os.environ.get("JOINEDUP_EXTRACT_DATE"):
            kwargs["extract_date"] = os.environ["JOINEDUP_EXTRACT_DATE"]
        return cls(**kwargs)

    # ---- agency side (plaintext never leaves here; simulated agencies for the demo) ----
    @property
    def agency_dir(self) -> Path:
        """Raw plaintext extracts as an agency holds them (synthetic)."""
        return self.home / "agency" / "raw"

    @property
    def key_file(self) -> Path:
        """The demo pseudonymisation key (agency side; never enters the warehouse)."""
        return self.home / "agency" / "keys" / "demo.key"

    @property
    def truth_dir(self) -> Path:
        """Synthetic ground truth: which records are the same child, outcomes, oracle. Never ingested."""
        return self.home / "truth"

    # ---- per unit: each unit's own folders and store ----
    @property
    def unit_home(self) -> Path:
        """Root of this unit's own files: the home for the hub, `linkage_unit/` for the linkage unit."""
        return self.home if self.unit == "hub" else self.home / "linkage_unit"

    @property
    def landing_dir(self) -> Path:
        """Pseudonymised extracts as delivered to this unit."""
        return self.unit_home / "landing"

    @property
    def reference_dir(self) -> Path:
        """Public reference data (areas and deprivation deciles)."""
        return self.home / "reference"

    @property
    def quarantine_dir(self) -> Path:
        """Whole files refused or quarantined at ingest, kept with a reason file."""
        return self.unit_home / "quarantine"

    @property
    def warehouse_path(self) -> Path:
        """This unit's store: the hub's warehouse, or the linkage unit's own DuckDB file."""
        if self.unit == "hub":
            return self.home / "warehouse" / "joinedup.duckdb"
        return self.unit_home / "store" / "linkage.duckdb"

    @property
    def published_path(self) -> Path:
        """The analysts' read-only snapshot (the dashboard's); swapped in atomically by publish,
        beside the planners' and engineers' (`warehouse.read_models.builder.snapshot_paths`)."""
        return self.home / "warehouse" / "published_analysts.duckdb"

    @property
    def outputs_dir(self) -> Path:
        """Reports: linkage quality, Data Docs, model metrics and card, forecasts."""
        return self.unit_home / "outputs"

    @property
    def gx_root(self) -> Path:
        """The Great Expectations project root of this unit (its `gx/` folder lives here)."""
        return self.unit_home

    # ---- the hand-off between the units ----
    @property
    def handoff_outbox(self) -> Path:
        """What the linkage unit sends the hub: record token -> child id, and quality figures."""
        return self.home / "linkage_unit" / "outbox"

    @property
    def handoff_inbox(self) -> Path:
        """Where the hub receives the linkage unit's hand-off (copied here in the embedded default)."""
        return self.home / "inbox" / "linkage_unit"

    @property
    def review_decisions_inbox(self) -> Path:
        """Where the linkage unit receives clerical-review decisions files
        (`link_decisions_*.csv`, docs/linkage.md) from the hub's dashboard; the link stage
        imports them (`linkage.review_import`) and files each under `processed/` or `rejected/`."""
        return self.home / "linkage_unit" / "inbox" / "review_decisions"

    @property
    def dashboard_outbox(self) -> Path:
        """Where the dashboard writes the decisions files for the linkage unit (copied atomically
        into `review_decisions_inbox` in the embedded default; sent by file exchange in a
        deployment)."""
        return self.home / "dashboard" / "outbox"

    @property
    def models_dir(self) -> Path:
        """Model registry: one folder per model version."""
        return self.home / "models"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    def ensure_dirs(self) -> None:
        """Create this unit's folders (and the shared agency-side ones of the demo)."""
        for p in (
            self.agency_dir,
            self.key_file.parent,
            self.truth_dir,
            self.landing_dir,
            self.reference_dir,
            self.quarantine_dir,
            self.warehouse_path.parent,
            self.outputs_dir,
            self.models_dir,
            self.airflow_home,
        ):
            p.mkdir(parents=True, exist_ok=True)
