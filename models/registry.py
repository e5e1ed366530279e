"""The model registry under `settings.models_dir`: `<version>/model.joblib`, `metadata.json`,
`metrics.json`, the model card, and the `current` pointer, which only ever names a model that
passed the deployment gate (`_promote`); loading checks the model file's sha256 and the gate
(`load_current`).  Also re-gates a registered version under a newer gate file (`_regate`) and
writes the latest trained model's metrics and card to `settings.outputs_dir`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import joblib

from joinedup import faults
from joinedup.config import Settings

MODEL_FILE = "model.joblib"


CURRENT_FILE = "current"


class NoPromotedModelError(RuntimeError):
    """No model has passed the deployment gate: there is nothing to score with."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def current_version(settings: Settings) -> str | None:
    p = settings.models_dir / CURRENT_FILE
    return p.read_text().strip() if p.exists() else None


def _set_current(settings: Settings, version: str) -> None:
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    tmp = settings.models_dir / f".{CURRENT_FILE}.tmp"
    tmp.write_text(version + "\n")
    os.replace(tmp, settings.models_dir / CURRENT_FILE)


def read_metrics(settings: Settings, version: str) -> dict:
    """metrics.json of a registered version ({} when it has none)."""
    path = settings.models_dir / version / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def gate_outcome(settings: Settings, version: str) -> dict | None:
    """The deployment gate outcome recorded in a version's metrics.json (None: never gated)."""
    return read_metrics(settings, version).get("gate")


def is_promoted(settings: Settings, version: str) -> bool:
    return bool((gate_outcome(settings, version) or {}).get("promoted"))


def registered_versions(settings: Settings) -> list[dict]:
    """Every registered version, oldest first: created_at, kind, test AUC, gate outcome and
    whether it is current."""
    if not settings.models_dir.exists():
        return []
    current = current_version(settings)
    out = []
    for folder in settings.models_dir.iterdir():
        meta_path = folder / "metadata.json"
        if not folder.is_dir() or folder.name.startswith(".") or not meta_path.exists():
            continue
        meta = json.loads(meta_path.read_text())
        metrics = read_metrics(settings, folder.name)
        gate = metrics.get("gate")
        out.append(
            {
                "version": folder.name,
                "created_at": meta.get("created_at"),
                "model_kind": meta.get("model_kind"),
                "test_roc_auc": metrics.get("roc_auc"),
                "test_precision_at_capacity": metrics.get("precision_at_capacity"),
                "promoted": None if gate is None else bool(gate.get("promoted")),
                "gate_version": None if gate is None else gate.get("gate", {}).get("version"),
                "gate_reasons": [] if gate is None else list(gate.get("reasons", [])),
                "current": folder.name == current,
                "calibration_deciles": metrics.get("calibration_deciles") or [],
            }
        )
    return sorted(out, key=lambda r: (str(r["created_at"]), r["version"]))


def no_promoted_reason(settings: Settings) -> str:
    versions = registered_versions(settings)
    if not versions:
        return f"no model registered in {settings.models_dir}: run `joinedup train` first"
    latest = versions[-1]
    why = "; ".join(latest["gate_reasons"]) or "it has no deployment gate outcome"
    return (
        f"no model has passed the deployment gate, so no scores can be published; the latest "
        f"model {latest['version']} was registered but not promoted: {why}"
    )


def load_current(
    settings: Settings, version: str | None = None, allow_unpromoted: bool = False
) -> tuple[dict, dict]:
    """(model bundle, metadata) of the current (or given) version, after checking the model
    file's sha256 against its metadata and that the version passed the deployment gate
    (`allow_unpromoted` skips that check, for inspection only -- never for publishing scores).
    Raises NoPromotedModelError when there is no current model, RuntimeError otherwise."""
    version = version or current_version(settings)
    if not version:
        raise NoPromotedModelError(no_promoted_reason(settings))
    folder = settings.models_dir / version
    meta_path, model_path = folder / "metadata.json", folder / MODEL_FILE
    if not meta_path.exists() or not model_path.exists():
        raise RuntimeError(f"model version {version} is incomplete in {folder}")
    meta = json.loads(meta_path.read_text())
    digest = _sha256(model_path)
    if digest != meta.get("model_sha256"):
        raise RuntimeError(
            f"model version {version}: {model_path} sha256 {digest[:12]}... does not match "
            f"metadata.json ({str(meta.get('model_sha256'))[:12]}...); refusing to load it"
        )
    if not allow_unpromoted and not is_promoted(settings, version):
        reasons = (gate_outcome(settings, version) or {}).get("reasons") or [
            "it has no deployment gate outcome"
        ]
        raise RuntimeError(
            f"model version {version} did not pass the deployment gate; refusing to use it: "
            + "; ".join(reasons)
        )
    return joblib.load(model_path), meta


def _promote(settings: Settings, version: str, outcome: dict) -> bool:
    """Point `current` at `version` if it passed the gate.  Otherwise leave the previous promoted
    model current -- or remove a pointer at a model that was never promoted (an old registry)."""
    faults.checkpoint("train.before_current")
    if outcome["promoted"]:
        _set_current(settings, version)
        return True
    current = current_version(settings)
    if current and not is_promoted(settings, current):
        (settings.models_dir / CURRENT_FILE).unlink(missing_ok=True)
    return False


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def _publish_outputs(settings: Settings, version: str, metrics: dict) -> dict:
    """The model card beside metrics.json and in outputs; the metrics of the model just trained
    in `outputs/risk_model_metrics.json`, saying whether it is the current one."""
    from models import card

    paths = card.write(settings, version)
    settings.outputs_dir.mkdir(parents=True, exist_ok=True)
    current = current_version(settings)
    _write_json(
        settings.outputs_dir / "risk_model_metrics.json",
        {"version": version, "is_current": current == version, "current_version": current,
         **metrics},
    )  # fmt: skip
    return paths


def _regate(settings: Settings, version: str, gate) -> dict:
    """A registered version's metrics with the gate outcome under `gate` (re-checked when the
    recorded outcome came from another gate file; the earlier outcome is kept in
    `gate_history`)."""
    from models import gate as gates

    folder = settings.models_dir / version
    metrics = json.loads((folder / "metrics.json").read_text())
    old = metrics.get("gate")
    if old is None or old.get("gate") != gate.provenance():
        metrics["gate"] = gates.check(metrics, metrics.get("fairness"), gate)
        if old is not None:
            metrics.setdefault("gate_history", []).append(old)
        _write_json(folder / "metrics.json", metrics)
    return metrics
