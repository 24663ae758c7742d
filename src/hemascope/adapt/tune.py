"""Choosing few-shot hyper-parameters with Optuna, by cross-validation inside the shots only.

As in the cross-lab study: learning rate, batch size, epochs and which layers train are
searched (TPE sampler, seeded) to maximise mean accuracy over stratified folds of the K
labelled images; the test images are never looked at. Needs the ``tune`` extra (optuna).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from hemascope.adapt.fewshot import FewShotConfig, fit_and_predict
from hemascope.data.splits import stratified_kfold
from hemascope.errors import HemascopeError
from hemascope.models.artifact import LoadedModel


def tune_fewshot(base: LoadedModel, classes: list[str], x: np.ndarray, y: np.ndarray,
                 cfg: FewShotConfig, *, n_trials: int = 12, folds: int = 3,
                 log: Callable[[str], None] = lambda s: None) -> tuple[FewShotConfig, list[dict]]:
    """Best config for the shots ``(x, y)`` (already colour-standardised) and the trial log."""
    try:
        import optuna
    except ImportError:
        raise HemascopeError("--tune needs optuna: pip install 'hemascope[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    keys = [str(i) for i in range(len(y))]
    k = min(folds, len(y))
    assign = stratified_kfold(keys, [str(v) for v in y], k=k, seed=cfg.seed)
    fold_of = np.array([int(assign[key][4:]) for key in keys])

    def objective(trial) -> float:
        trial_cfg = replace(cfg, lr=trial.suggest_float("lr", 1e-5, 3e-3, log=True),
                            batch_size=trial.suggest_categorical("batch_size", [8, 16, 32]),
                            epochs=trial.suggest_int("epochs", 10, 60, step=10),
                            mode=trial.suggest_categorical("mode", ["full", "head"]),
                            pseudo_rounds=0, shot_epochs=0,
                            predict="head")  # tune the fine-tuning only
        accs = []
        for f in range(k):
            tr, te = fold_of != f, fold_of == f
            if not te.any() or len(np.unique(y[tr])) < 1:
                continue
            _, pred = fit_and_predict(base, classes, trial_cfg, x[tr], y[tr], x[te])
            accs.append(float((pred == y[te]).mean()))
        score = float(np.mean(accs)) if accs else 0.0
        log(f"trial {trial.number}: {trial.params} -> cv accuracy {score:.4f}")
        return score

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=cfg.seed))
    study.optimize(objective, n_trials=n_trials)
    best = study.best_params
    trials = [{"params": t.params, "cv_accuracy": t.value} for t in study.trials]
    return replace(cfg, **best), trials  # pseudo_rounds stays the caller's
