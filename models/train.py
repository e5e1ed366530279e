"""The `train` stage of the risk model: choose, calibrate, evaluate, gate and register.

Owns the stage's `run`: the split (`models.dataset`), fitting the candidates and choosing
between them on the validation rows only (held-out children; `models.fitting`), calibration
fitted on the validation rows, the held-out test metrics with child-level bootstrap CIs
(`models.evaluation`), the fairness audit (`models.fairness`), the comparison with the
synthetic oracle (`models.oracle`), the deployment gate (`models.gate`) and registration
(`models.registry`).  The version is a hash of the labelled feature data and the training
configuration, so training twice on the same features reuses the same version.  Every trained
model is registered; `current` moves to it only when it passes the pre-registered gate.

Reads `features.child_month` (and `linked.children` for the fairness groups); writes only the
registry (and copies of the metrics and model card under `settings.outputs_dir`).  Re-exports
the classes pickled inside registered models (`Log1pColumns`, `LogitBlend`,
`RankPreservingCalibration`), so models registered before the split still load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from joinedup.config import Settings
from models.dataset import (
    canonical_order,
    content_keys,
    feature_data_hash,
    load_features,
    split_rows,
    tie_break_keys,
)
from models.evaluation import bootstrap_weights, evaluate
from models.features import feature_columns
from models.fitting import (
    DEFAULT_CANDIDATES,
    Log1pColumns,
    LogitBlend,
    RankPreservingCalibration,
    _predict,
    blend_of,
    calibration_warnings,
    fit_candidates,
)
from models.oracle import OBSERVABLE, oracle_for_rows
from models.registry import (
    MODEL_FILE,
    _promote,
    _publish_outputs,
    _regate,
    _sha256,
    current_version,
)
from warehouse.db import connect

#: pickled inside registered models under this module's name before the split
__all__ = ["Log1pColumns", "LogitBlend", "RankPreservingCalibration", "run"]

#: bump when training code changes in a way that should make a new version on the same data
TRAINING_CODE_VERSION = "5"


# ------------------------------------------------------------------ data and split


# ------------------------------------------------------------------ metrics


# ------------------------------------------------------------------ oracle (synthetic truth)


# ------------------------------------------------------------------ registry


# ------------------------------------------------------------------ the stage


def run(
    settings: Settings,
    n_test_months: int = 6,
    n_val_months: int = 0,
    embargo_months: int = 12,
    n_boot: int = 200,
    candidates: tuple[dict, ...] | None = None,
    calibration: str = "auto",
    val_child_fraction: float = 0.3,
    blend: bool = True,
    gate=None,
    **_: object,
) -> dict:
    """Train the candidates, choose and calibrate on validation, evaluate on test (overall and
    by group), register, and promote to `current` only if the deployment gate passes.

    `blend`: also offer the log-odds mean of the best logistic and the best gradient boosting
    (`LogitBlend`) as a candidate.  `gate`: a `models.gate.Gate`, or the path of a gate file;
    default the committed `models/gate.toml`."""
    from models import fairness
    from models import gate as gates

    t0 = time.perf_counter()
    gate = gate if isinstance(gate, gates.Gate) else gates.load(gate)
    candidates = tuple(candidates or DEFAULT_CANDIDATES)
    features = feature_columns()
    config = {
        "n_test_months": n_test_months,
        "n_val_months": n_val_months,
        "embargo_months": embargo_months,
        "n_boot": n_boot,
        "candidates": list(candidates),
        "calibration": calibration,
        "val_child_fraction": val_child_fraction,
        "blend": blend,
        "capacity_per_month": settings.capacity_per_month,
        "seed": settings.seed,
        "features": features,
        "sklearn": sklearn.__version__,
        "code": TRAINING_CODE_VERSION,
    }
    with connect(settings) as con:
        df = load_features(con, labelled=True)
        if df.empty:
            raise RuntimeError("features.child_month has no labelled rows: run `joinedup features`")
        # canonical order by content, not by child id (a pseudonym that moves with the key)
        # (ties: children the model cannot tell apart, ordered by the synthetic oracle if known,
        # so that its bootstrap figures repeat too)
        orc_all = oracle_for_rows(settings, con, df[["child_id", "as_of"]])
        ties = None if orc_all is None else tie_break_keys(df, orc_all)
        df = canonical_order(df, content_keys(df, fairness.ethnicity_by_child(con)), ties)
        data_hash = feature_data_hash(df)
        version = hashlib.sha256(
            (data_hash + json.dumps(config, sort_keys=True)).encode()
        ).hexdigest()[:16]
        folder = settings.models_dir / version
        reuse = (folder / "metadata.json").exists() and (folder / "metrics.json").exists()
        if not reuse:
            split, part = split_rows(
                df, n_test_months, n_val_months, embargo_months, val_child_fraction, settings.seed
            )
            test_rows = df.loc[
                part["test"], ["child_id", "as_of", "sex_female", "sex_unknown", "imd_decile"]
            ].reset_index(drop=True)
            oracle = oracle_for_rows(settings, con, test_rows)
            observable = oracle_for_rows(settings, con, test_rows, OBSERVABLE)
            groups = fairness.group_labels(con, test_rows)
    if reuse:
        metrics = _regate(settings, version, gate)
        promoted = _promote(settings, version, metrics["gate"])
        card = _publish_outputs(settings, version, metrics)
        return _figures(settings, version, True, metrics, promoted, card)
    # the warehouse is closed while fitting (DuckDB has one writer at a time)
    X = df[features].to_numpy(dtype=np.float64)
    y = df["label"].to_numpy(dtype=np.int8)
    Xtr, ytr = X[part["train"]], y[part["train"]]
    Xva, yva = X[part["validation"]], y[part["validation"]]

    tried: list[dict] = []
    fitted: dict[int, object] = {}
    val_p: dict[int, np.ndarray] = {}
    best, best_key = None, None

    def consider(i: int, cand: dict, model, pv: np.ndarray, extra: dict) -> None:
        nonlocal best, best_key, best_i, chosen
        ap = float(average_precision_score(yva, pv))
        auc = float(roc_auc_score(yva, pv))
        ll = float(log_loss(yva, np.clip(pv, 1e-6, 1 - 1e-6)))
        tried.append(
            {
                **cand,
                "validation_average_precision": round(ap, 5),
                "validation_log_loss": round(ll, 5),
                "validation_roc_auc": round(auc, 5),
                **extra,
            }
        )
        # chosen on the gate's primary metric (ROC AUC; ties at 3 decimals by log loss): with ~1%
        # positives validation AP differences of 0.001 are noise and picked weak candidates
        key = (round(auc, 3), -ll)
        if best_key is None or key > best_key:
            best, best_key, best_i, chosen = model, key, i, cand

    best_i, chosen = -1, {}
    for i, model, pv, seconds in fit_candidates(
        candidates, features, settings.seed, Xtr, ytr, Xva, yva
    ):
        extra: dict = {"fit_seconds": round(seconds, 2)}
        if candidates[i]["kind"] == "hgb":
            extra["iterations"] = int(model.n_iter_)
        fitted[i], val_p[i] = model, pv
        consider(i, candidates[i], model, pv, extra)
    if blend and (b := blend_of(tried, fitted, val_p)) is not None:
        consider(len(tried), b[0], b[1], b[2], {"fit_seconds": 0.0})
    del fitted, val_p

    method = calibration
    if method == "auto":
        method = "isotonic" if yva.sum() >= 500 else "sigmoid"
    calibrator = CalibratedClassifierCV(FrozenEstimator(best), method=method).fit(Xva, yva)
    warnings = calibration_warnings(calibrator, tried[best_i]["validation_roc_auc"])
    calibrated = RankPreservingCalibration(calibrator, best)

    pt = _predict(calibrated, X[part["test"]])

    # the chosen model only: one set of child-level bootstrap weights for all test figures
    yt, months_t = y[part["test"]], test_rows["as_of"].to_numpy()
    child_t = test_rows["child_id"].to_numpy()
    W = bootstrap_weights(child_t, n_boot, settings.seed)
    metrics = evaluate(
        yt,
        pt,
        months_t,
        child_t,
        settings.capacity_per_month,
        n_boot=n_boot,
        seed=settings.seed,
        oracle=oracle,
        weights=W,
        observable=observable,
    )
    metrics["fairness"] = fairness.audit(
        yt, pt, months_t, child_t, groups, settings.capacity_per_month, W
    )
    if oracle is not None and np.isfinite(oracle).any():
        # the same audit of the oracle's true probabilities: the chance level of each gap
        ok = np.isfinite(oracle)
        metrics["oracle_fairness"] = fairness.audit(
            yt[ok], oracle[ok], months_t[ok], child_t[ok],
            groups.loc[ok].reset_index(drop=True), settings.capacity_per_month, W[ok],
            summary_only=True,
        )  # fmt: skip
    del W
    metrics["gate"] = gates.check(metrics, metrics["fairness"], gate)
    metrics["validation"] = {
        "rows": int(part["validation"].sum()),
        "positives": int(yva.sum()),
        "roc_auc_uncalibrated": tried[best_i]["validation_roc_auc"],
    }
    metrics["warnings"] = warnings
    metrics["candidates"] = tried

    # reference values for reasons: training medians (counts -> 0 when the median is 0)
    ref = np.nanmedian(Xtr, axis=0)
    reference = {f: (0.0 if np.isnan(v) else float(v)) for f, v in zip(features, ref, strict=True)}
    bundle = {
        "version": version,
        "kind": chosen["kind"],
        "features": features,
        "model": calibrated,
        "base": best,
        "reference": reference,
    }
    dtypes = {c: str(df[c].dtype) for c in features}
    months = {k: [str(pd.Timestamp(m).date()) for m in v] for k, v in split.items()}
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=settings.models_dir))
    try:
        joblib.dump(bundle, tmp / MODEL_FILE)
        meta = {
            "version": version,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "model_kind": chosen["kind"],
            "hyper_parameters": (
                {**chosen, "iterations": int(best.n_iter_)} if chosen["kind"] == "hgb" else chosen
            ),  # a blend's parts carry their own iterations
            "calibration": method,
            "training_window": {
                "train": [months["train"][0], months["train"][-1]],
                "validation": [months["validation"][0], months["validation"][-1]],
                "test": [months["test"][0], months["test"][-1]],
                "embargo_months": embargo_months,
                "validation_child_fraction": val_child_fraction,
                "label_months": 12,
                "rows": {k: int(v.sum()) for k, v in part.items()},
                "positives": {k: int(y[v].sum()) for k, v in part.items()},
            },
            "features": features,
            "feature_dtypes": dtypes,
            "feature_data_sha256": data_hash,
            "config": config,
            "model_file": MODEL_FILE,
            "model_sha256": _sha256(tmp / MODEL_FILE),
            "sklearn_version": sklearn.__version__,
            "reason_method": (
                "coefficient x standardised value"
                if chosen["kind"] == "logistic"
                else "change in log-odds when a factor's features are set to training medians"
            ),
        }
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=2))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        if folder.exists():  # an incomplete earlier attempt
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    promoted = _promote(settings, version, metrics["gate"])
    card = _publish_outputs(settings, version, metrics)
    figures = _figures(settings, version, False, metrics, promoted, card)
    figures.update(model_kind=chosen["kind"], calibration=method)
    figures["seconds"] = round(time.perf_counter() - t0, 2)
    return figures


def _figures(
    settings: Settings, version: str, reused: bool, metrics: dict, promoted: bool, card: dict
) -> dict:
    gate = metrics.get("gate") or {}
    return {
        "version": version,
        "reused": reused,
        "promoted": promoted,
        "current_version": current_version(settings),
        "gate_version": (gate.get("gate") or {}).get("version"),
        "gate_reasons": list(gate.get("reasons", [])),
        **_summary(metrics),
        "model_card": card.get("outputs_markdown"),
    }


def _summary(metrics: dict) -> dict:
    keys = (
        "rows",
        "positives",
        "roc_auc",
        "roc_auc_ci",
        "average_precision",
        "average_precision_ci",
        "brier",
        "ece",
        "precision_at_capacity",
        "precision_at_capacity_ci",
        "recall_at_capacity",
        "recall_at_capacity_ci",
        "oracle_roc_auc",
        "auc_ratio_to_oracle",
        "observable_oracle_roc_auc",
        "auc_gap_to_observable_oracle",
        "auc_gap_to_observable_oracle_ci",
        "warnings",
    )
    out = {f"test_{k}": metrics[k] for k in keys if k in metrics}
    cal = metrics.get("calibration") or {}
    if cal.get("max_abs_deviation") is not None:
        out["test_calibration_max_abs_deviation"] = cal["max_abs_deviation"]
        out["test_calibration_within_2pp"] = cal["within_tolerance"]
    return out
