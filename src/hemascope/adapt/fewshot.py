"""Few-shot fine-tuning of a classifier on a new lab (Chossegros et al. 2024 workflow).

K labelled target images, drawn stratified by class (seeded; listed in ``shots.txt``),
fine-tune the base model; every other image of the target set is the test set. Target
labels are mapped onto the base model's classes through the taxonomy; the adapted model
keeps only the classes the target set has. With ``stain="reinhard"`` (the study's
workflow; not the default) target images are first mapped onto the base model's training
style (``config["source_style"]``) and the adapted model carries that transform
(``stain_reference``) so inference repeats it.

With ``batchnorm="target"`` (the default) the encoder's batch-norm statistics are first
re-estimated on every image of the target set, labels unused (AdaBN,
:mod:`hemascope.adapt.batchnorm`), and kept fixed while the shots fine-tune the weights.
A lab has all its images, unlabelled, when it labels K of them; the test images' labels
are never seen.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hemascope.adapt.batchnorm import SOURCES as BATCHNORMS
from hemascope.adapt.batchnorm import freeze_batchnorm, reestimate_batchnorm
from hemascope.adapt.imprint import imprint_classes, new_classes
from hemascope.adapt.pseudolabel import select_pseudo_labels
from hemascope.augment import AugmentConfig
from hemascope.data import ClassificationSet, load_dataset
from hemascope.data.labels import refuse_unknown_labels
from hemascope.data.cache import load_cached
from hemascope.data.splits import few_shot
from hemascope.errors import DatasetError, HemascopeError
from hemascope.evaluate.classification import ClassificationReport, classification_report
from hemascope.model_classes import map_to_classes
from hemascope.io.atomic import write_json, write_text
from hemascope.models.artifact import LoadedModel, save_artifact
from hemascope.train.classifier import build_model, predict_probs, to_batch
from hemascope.train.config import ClassifierTrainConfig

MODES = ("full", "head", "none", "scratch")
STAINS = ("reinhard", "none")
PREDICTS = ("head", "propagate")
PSEUDO_FROM = ("head", "propagate")


@dataclass
class FewShotConfig:
    """One few-shot run.

    Attributes:
        mode: ``full`` fine-tunes everything, ``head`` only embedding + head, ``none``
            evaluates the base model as is, ``scratch`` trains the architecture from random
            init on the shots (the "no source training" condition).
        stain: ``reinhard`` maps target colours onto the base model's source style (the
            cross-lab study's workflow); ``none`` (the default) leaves colours to the target
            batch-norm statistics, which measured better on CellaVision in every seed at
            K = 10 and on average at K = 25 (``benchmarks/results/fewshot_cellavision.md``).
        batchnorm: ``target`` re-estimates the encoder's batch-norm statistics on all
            target images (no labels) and freezes them while fine-tuning; ``source`` keeps
            the base model's and lets fine-tuning update them. A SHOT start
            (``shot_epochs``) re-estimates them on the target in either case.
        source_mix: with a source set, this many source images per shot join training
            (the "mixed source + target" condition); 0 = target only.
        pseudo_rounds: self-training rounds (modes ``full`` and ``head``): the adapted model
            labels the target's unlabelled images, the ``pseudo_fraction`` most confident of
            each predicted class join the shots, and the base model is fine-tuned again on
            both (:mod:`hemascope.adapt.pseudolabel`). 0 = shots only.
        pseudo_fraction: share of each predicted class taken per round.
        pseudo_from: what ranks the pseudo-labels of a round. ``head``: the adapted model's
            softmax averaged over four flips/rotations. ``propagate``: the transductive
            scores that ``predict="propagate"`` gives (softmax and label propagation from
            the shots), so the model trained next learns from the propagated labels. The
            default, ``propagate``, measured on CellaVision's fresh seeds 10-14 (rule fixed
            before they ran) +0.012 transductive accuracy and +0.038 macro-F1 over 10 (K,
            seed) pairs, and +0.031 / +0.093 for the saved model's head alone; pooled with
            the exploration seeds 0-4 the gain is at K = 10 (+0.019, 8 better, none worse),
            none at K = 25 (-0.003) (``benchmarks/results/pseudo_propagate_pooled.md``).
        pseudo_per_shot: at most this many pseudo-labelled images per shot (the share is
            lowered to fit), so that a large unlabelled folder keeps the run in minutes.
        max_image_passes: each fine-tuning sees at most this many images in all (epochs x
            shots and pseudo-labels); a larger training set gets fewer epochs (at least
            one), so that K = 100 on a folder of thousands still adapts in minutes. Runs
            below it are unchanged (every CellaVision run: at most its 100 images x 30 epochs).
        shot_epochs: with N > 0 (modes ``full``, ``head`` and ``none``), the base model is
            first adapted to all target images by N epochs of SHOT
            (:mod:`hemascope.adapt.shot`; no source data); fine-tuning then starts from that
            model. 0 = off.
        shot_labels: the shots take part in that SHOT run (semi-supervised: they anchor its
            class centroids and add a cross-entropy term); otherwise it uses no label. The
            default (10 epochs, shots included) measured +0.017 accuracy on CellaVision,
            better in 14 of 20 (K, seed) pairs and worse in 3
            (``benchmarks/results/shot_labels_pooled.md``).
        shot_max_images: images of a large folder drawn per SHOT epoch, so the run stays in
            minutes on a CPU.
        shot_prior: what SHOT's diversity term pulls the mean prediction towards:
            ``uniform`` (the paper: every class equally often) or ``shots``, the class
            shares of the shots, which are drawn in proportion to the classes
            (:func:`hemascope.adapt.shot.shot_prior`); uniform when SHOT runs without the
            shots (``shot_labels`` off). ``shots`` did not meet the rule fixed before its
            run: on CellaVision (fresh seeds 25-29, K = 10) it lowered accuracy by 0.009
            and macro-F1 by 0.041, losing basophils (recall 0.90 -> 0.70)
            (``benchmarks/results/fewshot_prior.md``). So ``uniform`` is the default.
        predict: how the target's unlabelled images are labelled at the end. ``head``: the
            adapted model's own softmax. ``propagate`` (transductive): the mean of two
            opinions, (1) the softmax of the adapted model, averaged with the SHOT start's
            when there is one, and (2) label propagation from the shots over the kNN graph
            of every target image's embedding (:mod:`hemascope.adapt.propagate`). The
            graph comes from the SHOT start when there is one (SHOT trains the embedding
            to cluster the target's cells; fine-tuning on a few shots does not), else from
            the adapted model. The saved model still predicts new images with its head
            alone; the run records that head's own score beside the propagated one. The
            default, ``propagate``, measured +0.036 accuracy and +0.050 macro-F1 on
            CellaVision over 10 (K, seed) pairs of fresh seeds, better in 8 and worse in
            none (``benchmarks/results/propagate_cellavision_seeds5_9.md``); +0.030 and
            +0.052 over 20 pairs with the seeds it was found on
            (``benchmarks/results/propagate_pooled.md``).
        views: flips/rotations of each target image (1, 2, 4 or 8) whose embeddings and
            softmax are averaged for the transductive scores (``predict`` and
            ``pseudo_from`` ``propagate``): cells have no up or left, so the averaged
            embedding is steadier for the kNN graph. The default, 4, met the rule fixed
            before its run on fresh seeds 15-19 but only just: +0.004 accuracy and +0.015
            macro-F1 over 10 (K, seed) pairs, better in 4 (Wilcoxon p = 0.66;
            ``benchmarks/results/views_cellavision.md``).
        propagate_with: an attribute model (``default``, the shipped one, or a folder)
            whose embedding of every target image (``views`` averaged) joins the
            classifier's in the kNN graph of label propagation (both centred and
            L2-normalised, then side by side, so each counts half in the cosine): the graph
            then also links cells of like morphology (nucleus shape, chromatin, granules)
            that the cell-type embedding, trained on another lab, may keep apart. ``none``
            uses the classifier's alone. The default, ``default``, met the rule fixed before
            its run on fresh seeds 20-24: +0.009 transductive accuracy (better in 6 of 10
            (K, seed) pairs, worse in 1; Wilcoxon p = 0.09) and +0.026 macro-F1 (p = 0.039)
            (``benchmarks/results/propagate_with_cellavision.md``); with the K = 10
            exploration seeds 0-4, +0.008 and +0.022 over 15 pairs
            (``benchmarks/results/propagate_with_pooled.md``). The saved model's head
            alone is unchanged (+0.001 accuracy, -0.007 macro-F1).
    """

    shots: int = 25
    seed: int = 0
    mode: str = "full"
    stain: str = "none"
    batchnorm: str = "target"
    epochs: int = 30
    batch_size: int = 16
    lr: float = 3e-4
    head_lr_mult: float = 10.0
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    source_mix: float = 0.0
    pseudo_rounds: int = 1
    pseudo_fraction: float = 0.5
    pseudo_per_shot: float = 10.0
    max_image_passes: int = 6000
    pseudo_from: str = "propagate"
    shot_epochs: int = 10
    shot_labels: bool = True
    shot_max_images: int = 500
    shot_prior: str = "uniform"
    predict: str = "propagate"
    views: int = 4
    propagate_with: str = "default"
    threads: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        from hemascope.train.config import check_options

        check_options(self)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TargetData:
    """Target images (resized, uint8), labels as indices into ``classes``, and keys."""

    classes: list[str]
    images: np.ndarray
    labels: np.ndarray
    keys: list[str]
    errors: dict[str, str]


@dataclass
class FewShotResult:
    report: ClassificationReport | None  # None: no labelled image was left to score
    shots: list[str]
    run_dir: Path | None
    seconds: float
    head_only: ClassificationReport | None = None  # the saved model alone, with predict=propagate
    n_unlabelled: int = 0  # unlabelled images used (copies of labelled ones left out)


def load_target(data: str | Path | ClassificationSet, base: LoadedModel, *,
                format: str = "auto", new_classes: bool = True) -> TargetData:
    """Read a labelled target set and map its labels onto the base model's classes.

    A label is mapped to the base class that is it or its nearest ancestor in the taxonomy
    (``band_neutrophil`` -> ``neutrophil``). With ``new_classes``, a label that no base
    class covers (``blast`` for a peripheral-blood model) becomes a class of its own,
    after the base classes: few-shot adaptation imprints a head row for it from its shots
    (:mod:`hemascope.adapt.imprint`).

    Raises:
        DatasetError: labels unknown to the taxonomy, labels no base class covers (named)
            when ``new_classes`` is off, or a class with no readable image.
    """
    ds = data if isinstance(data, ClassificationSet) else load_dataset(data, format=format)
    empty = [p.message for p in ds.problems if p.kind == "empty_class"]
    if empty:
        raise DatasetError(f"{ds.root}: {'; '.join(empty)} (remove it or add images)")
    refuse_unknown_labels(ds)
    mapped = {s.label: map_to_classes(s.label, base.classes) for s in ds.samples}
    bad = sorted(k for k, v in mapped.items() if v is None)
    if bad and not new_classes:
        raise DatasetError(f"classes {bad} of {ds.root} map to none of the model's classes "
                           f"{base.classes} (hemascope fewshot learns such classes from their "
                           "shots unless told --no-new-classes)")
    mapped.update({k: k for k in bad})
    present = [c for c in base.classes if c in set(mapped.values())] + bad
    cached = load_cached([ds.root / s.path for s in ds.samples], int(base.config["image_size"]))
    kept = [ds.samples[i] for i in cached.index]
    labels = np.array([present.index(mapped[s.label]) for s in kept], np.int64)
    empty = [c for i, c in enumerate(present) if not (labels == i).any()]
    if empty:
        raise DatasetError(f"class(es) {empty} of {ds.root} have no readable image")
    return TargetData(present, cached.images, labels, [s.path for s in kept], cached.errors)


def source_style(base: LoadedModel):
    from hemascope.stain import StainReference

    style = base.config.get("source_style") or base.config.get("stain_reference")
    if not style:
        raise HemascopeError(f"model {base.path} records no source colour style; use --stain none "
                             "or a model trained with hemascope >= 0.1 that stores one")
    return StainReference.from_dict(style)


def run_fewshot(target: TargetData, base: LoadedModel, cfg: FewShotConfig, *,
                run_dir: str | Path | None = None, source: TargetData | None = None,
                unlabelled: TargetData | None = None, shot_keys: list[str] | None = None,
                tune_trials: int = 0, log: Callable[[str], None] = lambda s: None) -> FewShotResult:
    """Sample shots, adapt, evaluate on all other target images; optionally write the run.

    ``unlabelled``, if given, holds more images of the lab with no labels (its ``labels``
    are ignored): they join every step that uses unlabelled images (batch-norm statistics,
    SHOT, self-training, label propagation) and are labelled in ``predictions.csv``. With
    them, ``cfg.shots`` may take every labelled image (the lab's workflow: label a few
    cells, adapt to all of them); ``report`` is then ``None``, as nothing labelled is left
    to score. ``shot_keys`` names the shots (keys of ``target``, e.g. a ``shots.txt`` or
    the cells ``hemascope suggest`` chose) instead of sampling ``cfg.shots`` of them. With
    ``tune_trials > 0`` the hyper-parameters are first chosen by Optuna with
    3-fold cross-validation inside the shots (:func:`hemascope.adapt.tune.tune_fewshot`).
    """
    if (cfg.mode not in MODES or cfg.stain not in STAINS or cfg.batchnorm not in BATCHNORMS
            or cfg.predict not in PREDICTS or cfg.pseudo_from not in PSEUDO_FROM):
        raise HemascopeError(f"mode must be one of {MODES}, stain one of {STAINS}, batchnorm "
                             f"one of {BATCHNORMS}, predict one of {PREDICTS} and pseudo_from "
                             f"one of {PSEUDO_FROM}")
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    if cfg.propagate_with not in ("", "none"):  # a wrong folder fails now, not after training
        from hemascope.attributes.predict import load_attribute_model

        load_attribute_model(cfg.propagate_with)
    t0 = time.time()
    n = len(target.labels)
    if unlabelled is not None:
        unlabelled = _without_copies(unlabelled, target, log)
        if not len(unlabelled.images) and shot_keys is None and cfg.shots >= n:
            raise DatasetError("every unlabelled image is a copy of a labelled one, so no image "
                               "is left to adapt to or label: give other unlabelled images, or "
                               f"fewer --shots than the {n} labelled ones (the rest are then scored)")
    from hemascope.models.artifact import require_pytorch

    require_pytorch(base, "few-shot fine-tuning")
    pool = 0 if unlabelled is None else len(unlabelled.images)
    shots = _pick_shots(target, cfg, shot_keys, has_pool=pool > 0)
    cfg, chosen = replace(cfg, shots=len(shots)), set(shots)
    added = new_classes(base, target.classes)
    if added and cfg.mode != "scratch":
        have = {target.classes[target.labels[i]] for i, k in enumerate(target.keys) if k in chosen}
        missing = [c for c in added if c not in have]
        if missing:
            advice = ("name at least one shot of each in the list" if shot_keys is not None
                      else f"use --shots >= {len(target.classes)}")
            raise DatasetError(f"class(es) {missing} are new to the base model and need at "
                               f"least one shot each, but {cfg.shots} shots over "
                               f"{len(target.classes)} classes leave them none: {advice}")
        log(f"new classes, imprinted from their shots: {', '.join(added)}")
    keys = list(target.keys) + (list(unlabelled.keys) if pool else [])
    labels = np.concatenate([target.labels, np.full(pool, -1, np.int64)])  # -1: no label
    is_shot = np.array([i < n and k in chosen for i, k in enumerate(keys)])
    images = np.concatenate([target.images, unlabelled.images]) if pool else target.images
    reference = None
    if cfg.stain == "reinhard":
        from hemascope.stain import standardize

        reference = source_style(base)
        images = standardize(images, reference=reference)
    trials: list[dict] = []
    if tune_trials and cfg.mode in ("full", "head"):
        from hemascope.adapt.tune import tune_fewshot

        cfg, trials = tune_fewshot(base, target.classes, images[is_shot], labels[is_shot],
                                   cfg, n_trials=tune_trials, log=log)
        log(f"tuned: lr {cfg.lr:.2e}, batch {cfg.batch_size}, epochs {cfg.epochs}, mode {cfg.mode}")
    src = None
    if source is not None and cfg.source_mix > 0:
        src = _mix_source(source, target.classes, cfg)
    pseudo: list[dict[str, int]] = []
    head_pred: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    if cfg.shot_epochs > 0 and cfg.mode != "scratch":
        log(f"SHOT start: {cfg.shot_epochs} epochs on the {len(images)} target images"
            + (f", the {len(shots)} shots anchoring the classes" if cfg.shot_labels else
               ", no labels"))
    model, pred = fit_and_predict(base, target.classes, cfg, images[is_shot],
                                  labels[is_shot], images[~is_shot], source=src,
                                  pseudo_counts=pseudo, head_pred=head_pred, scores_out=scores)
    for r, counts in enumerate(pseudo, 1):
        log(f"self-training round {r}: {sum(counts.values())} pseudo-labels ("
            + ", ".join(f"{c} {n}" for c, n in counts.items()) + ")")
    scored = labels[~is_shot] >= 0  # the labelled images that were not shots
    report = head_only = None
    if scored.any():
        report = classification_report(labels[~is_shot][scored], pred[scored], target.classes)
        if head_pred:  # what the saved model alone scores on the same images
            head_only = classification_report(labels[~is_shot][scored], head_pred[0][scored],
                                              target.classes)
            log(f"the adapted model's head alone: accuracy {head_only.accuracy:.4f} "
                f"macro-F1 {head_only.macro_f1:.4f}")
    out = Path(run_dir) if run_dir else None
    if out is not None:
        metrics = {}
        if report is not None:
            metrics["test"] = report.to_dict()
        if head_only is not None:
            metrics["test_head_only"] = head_only.to_dict()
        config = {**{k: v for k, v in base.config.items()
                     if k not in ("weights_sha256", "format", "views")},
                  "classes": list(target.classes),
                  "stain_reference": reference.to_dict() if reference else None,
                  "training": {"base": str(base.path), "fewshot": cfg.to_dict(), "shots_file":
                               "../shots.txt", "n_shots": len(shots), "pseudo_labels": pseudo,
                               "new_classes": added, "n_unlabelled": pool},
                  "metrics": metrics}
        if cfg.mode == "scratch":
            config["training"]["base"] = None
        save_artifact(out / "model", model, config)  # first: a diverged run writes nothing
        write_text(out / "shots.txt", "\n".join(shots) + "\n")
        if report is not None:
            write_json(out / "metrics.json", report.to_dict())
        else:  # an earlier run's score must not pass for this one's
            (out / "metrics.json").unlink(missing_ok=True)
        write_text(out / "predictions.csv",
                   predictions_csv(keys, labels, target.classes, is_shot, scores[0]))
        if trials:
            write_json(out / "tuning.json", {"best": cfg.to_dict(), "trials": trials})
    log(f"{cfg.mode}/{cfg.stain} K={len(shots)} seed={cfg.seed}: " + (
        f"accuracy {report.accuracy:.4f} macro-F1 {report.macro_f1:.4f}" if report is not None
        else f"{int((~is_shot).sum())} unlabelled images labelled, no labelled image left to score"))
    return FewShotResult(report, shots, out, time.time() - t0, head_only, pool)


def _pick_shots(target: TargetData, cfg: FewShotConfig, shot_keys: list[str] | None, *,
                has_pool: bool) -> list[str]:
    """The keys of the shots: those named, all labelled images (with unlabelled ones
    beside them), or ``cfg.shots`` drawn stratified by class with ``cfg.seed``."""
    n = len(target.keys)
    if shot_keys is not None:
        unknown = sorted(set(shot_keys) - set(target.keys))
        if unknown or not shot_keys:
            raise DatasetError(f"the shots named must be readable images of the target set; "
                               f"not there: {unknown[:5] or 'none named'}")
        shots = list(dict.fromkeys(shot_keys))
        if len(shots) < n or has_pool:
            return shots
    elif cfg.shots < n or (cfg.shots == n and has_pool):
        return (list(target.keys) if cfg.shots == n else
                few_shot(target.keys, [target.classes[i] for i in target.labels],
                         shots=cfg.shots, seed=cfg.seed))
    k = len(shot_keys) if shot_keys is not None else cfg.shots
    raise DatasetError(f"asked for {k} shots but the target set holds only {n} readable "
                       "images (some must remain for testing, or give unlabelled images)")


def _without_copies(unlabelled: TargetData, target: TargetData,
                    log: Callable[[str], None]) -> TargetData:
    """``unlabelled`` less the images that are pixel for pixel labelled ones (a lab that
    copied its labelled cells rather than moving them out of the folder)."""
    import hashlib

    digest = lambda a: hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=16).digest()  # noqa: E731
    labelled = {digest(im) for im in target.images}
    keep = np.array([digest(im) not in labelled for im in unlabelled.images], dtype=bool)
    if keep.all():
        return unlabelled
    log(f"{int((~keep).sum())} unlabelled image(s) are copies of labelled ones: left out")
    return replace(unlabelled, images=unlabelled.images[keep],
                   keys=[k for k, m in zip(unlabelled.keys, keep) if m])


PREDICTION_COLUMNS = ("path", "split", "true", "predicted", "probability", "second",
                      "second_probability")


def predictions_csv(keys: list[str], labels: np.ndarray, classes: list[str],
                    is_shot: np.ndarray, scores: np.ndarray) -> str:
    """``RUN/predictions.csv``: every image, the shots first with their given label
    (``split`` = ``shot``), then each other image (``test``) with its true label (empty
    where ``labels`` is -1: an unlabelled image), the predicted class and the runner-up,
    and their scores (the rows of ``scores``, in the order of the non-shot images)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(PREDICTION_COLUMNS)
    for i in np.flatnonzero(is_shot):
        label = classes[labels[i]]
        w.writerow([keys[i], "shot", label, label, "", "", ""])
    for i, row in zip(np.flatnonzero(~is_shot), scores, strict=True):
        first, second = np.argsort(-row)[:2] if len(row) > 1 else (int(row.argmax()), None)
        w.writerow([keys[i], "test", classes[labels[i]] if labels[i] >= 0 else "",
                    classes[first], f"{row[first]:.6f}", "" if second is None else classes[second],
                    "" if second is None else f"{row[second]:.6f}"])
    return buf.getvalue()


def fit_and_predict(base: LoadedModel, classes: list[str], cfg: FewShotConfig, x: np.ndarray,
                    y: np.ndarray, test_x: np.ndarray, *,
                    source: tuple[np.ndarray, np.ndarray] | None = None,
                    pseudo_counts: list[dict[str, int]] | None = None,
                    head_pred: list[np.ndarray] | None = None,
                    scores_out: list[np.ndarray] | None = None) -> tuple[nn.Module, np.ndarray]:
    """Adapt a copy of ``base`` to ``(x, y)`` as ``cfg.mode`` says; predicted indices for ``test_x``.

    With ``cfg.batchnorm == "target"`` the batch-norm statistics come from ``x`` and
    ``test_x`` together (images only) and stay fixed during fine-tuning. With
    ``cfg.pseudo_rounds`` (modes ``full`` and ``head``) the unlabelled ``test_x`` also
    lends pseudo-labels: each round starts again from ``base`` with the shots plus the
    most confident share of every class the previous round predicted (ranked as
    ``cfg.pseudo_from`` says); the true labels of ``test_x`` are never seen.
    ``pseudo_counts``, if given, receives the pseudo-labels taken per class in each round.
    With ``cfg.predict == "propagate"`` the returned predictions are transductive: the
    softmax (of the adapted model and the SHOT start, averaged) and label propagation from
    ``(x, y)`` over the embeddings of ``x`` and ``test_x`` (the SHOT start's, if any);
    ``head_pred``, if given, then receives the adapted model's own predictions.
    ``scores_out``, if given, receives the ``(len(test_x), C)`` class scores the
    predictions are the argmax of.
    """
    mean, std = base.normalisation
    every = np.concatenate([x, test_x])  # the target's images, for batch-norm statistics
    if cfg.mode != "scratch":  # classes the base lacks get head rows from their shots
        base = imprint_classes(base, classes, x, y, every)
    start = None  # the SHOT start, if any
    if cfg.shot_epochs > 0 and cfg.mode != "scratch":
        base = start = source_free_base(base, classes, every, cfg,
                                        shots=(x, y) if cfg.shot_labels else None)
    model = _adapt(base, classes, cfg, x, y, every, mean, std, source=source,
                   keep_bn=start is not None and cfg.mode == "none")
    rounds = cfg.pseudo_rounds if cfg.mode in ("full", "head") and len(test_x) else 0
    share = min(cfg.pseudo_fraction, cfg.pseudo_per_shot * len(y) / max(1, len(test_x)))
    transductive = _Transductive(start if cfg.mode != "none" else None, every, len(x), y,
                                 mean, std, views=cfg.views,  # with mode none, model is the start
                                 extra=_extra_embedding(cfg, every))
    for _ in range(rounds):
        if cfg.pseudo_from == "propagate":
            ranking = transductive(model)[0][len(x):]
        else:  # four flips/rotations give steadier confidences to rank pseudo-labels by
            ranking = predict_probs(model, test_x, mean, std, views=4)
        picked, labels = select_pseudo_labels(ranking, share)
        if pseudo_counts is not None:
            pseudo_counts.append({c: int((labels == i).sum()) for i, c in enumerate(classes)})
        model = _adapt(base, classes, cfg, np.concatenate([x, test_x[picked]]),
                       np.concatenate([y, labels]), every, mean, std, source=source)
    if cfg.predict == "propagate" and len(test_x):
        scores, own = transductive(model)
        if head_pred is not None:
            head_pred.append(own[len(x):].argmax(1))
        scores = scores[len(x):]
    else:
        scores = predict_probs(model, test_x, mean, std)
    if scores_out is not None:
        scores_out.append(scores)
    return model, scores.argmax(1)


class _Transductive:
    """Transductive scores of every target image for an adapted model: its softmax
    (averaged with the SHOT start's, if any) and label propagation from the shots over the
    embeddings (the SHOT start's, computed once, else the model's own; with ``extra``,
    that embedding joined to it by :func:`join_embeddings`). Calling it on a model returns
    ``(scores, the model's own softmax)``, both ``(n, C)``, shots first."""

    def __init__(self, start: LoadedModel | None, every: np.ndarray, n_shots: int,
                 y: np.ndarray, mean: torch.Tensor, std: torch.Tensor, *, views: int = 1,
                 extra: np.ndarray | None = None) -> None:
        self.start, self.every, self.y, self.extra = start, every, y, extra
        self.n_shots, self.mean, self.std, self.views = n_shots, mean, std, views
        self._start_view: tuple[np.ndarray, np.ndarray] | None = None

    def _view(self, model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
        from hemascope.adapt.shot import embed_all

        emb, logits = embed_all(model, self.every, self.mean, self.std, views=self.views)
        return emb.float().numpy(), torch.softmax(logits.float(), 1).numpy()

    def __call__(self, model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
        from hemascope.adapt.propagate import transductive_probs

        emb, own = self._view(model)
        probs = own
        if self.start is not None:
            if self._start_view is None:
                self._start_view = self._view(self.start.model)
            emb, start_probs = self._start_view
            probs = (own + start_probs) / 2.0
        if self.extra is not None:
            emb = join_embeddings(emb, self.extra)
        scores = transductive_probs(probs, emb, np.arange(self.n_shots), self.y)
        return scores, own


def join_embeddings(*embs: np.ndarray) -> np.ndarray:
    """Embeddings of the same rows side by side, each centred and L2-normalised per row, so
    that each counts equally in a cosine similarity."""
    parts = []
    for e in embs:
        e = np.asarray(e, dtype=np.float64)
        e = e - e.mean(0, keepdims=True)
        parts.append(e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12))
    return np.concatenate(parts, axis=1)


def _extra_embedding(cfg: FewShotConfig, every: np.ndarray) -> np.ndarray | None:
    """The ``propagate_with`` attribute model's embedding of every target image, if any."""
    if cfg.propagate_with in ("", "none") or "propagate" not in (cfg.predict, cfg.pseudo_from):
        return None
    from hemascope.attributes.predict import attribute_embeddings, load_attribute_model

    return attribute_embeddings(load_attribute_model(cfg.propagate_with), list(every),
                                views=cfg.views)


def source_free_base(base: LoadedModel, classes: list[str], images: np.ndarray,
                     cfg: FewShotConfig, *, shots: tuple[np.ndarray, np.ndarray] | None = None
                     ) -> LoadedModel:
    """``base`` restricted to ``classes`` and adapted to ``images`` by source-free SHOT
    (``cfg.shot_epochs`` epochs, ``cfg.seed``; labels only those of ``shots``, if given)."""
    from hemascope.adapt.shot import ShotConfig, adapt_source_free

    unlabelled = TargetData(list(classes), images, np.zeros(0, np.int64), [], {})
    shot = ShotConfig(epochs=cfg.shot_epochs, max_images=cfg.shot_max_images, seed=cfg.seed,
                      threads=cfg.threads, prior=cfg.shot_prior)
    res = adapt_source_free(unlabelled, base, shot,
                            target_labelled=False, classes=list(classes), shots=shots)
    return LoadedModel(res.model, {**base.config, "classes": list(classes)}, base.path)


def _adapt(base: LoadedModel, classes: list[str], cfg: FewShotConfig, x: np.ndarray, y: np.ndarray,
           bn_images: np.ndarray, mean: torch.Tensor, std: torch.Tensor, *,
           source: tuple[np.ndarray, np.ndarray] | None = None, keep_bn: bool = False) -> nn.Module:
    """One adaptation of a fresh copy of ``base``: batch-norm statistics from ``bn_images``
    (with ``cfg.batchnorm == "target"``, unless ``keep_bn``: a SHOT start already holds
    the target's statistics, and with nothing trained after it new ones would only move
    the features away from what its head learned on), then fine-tuning on ``(x, y)``."""
    model = _adaptable_model(base, cfg, classes)
    target_bn = cfg.batchnorm == "target" and cfg.mode != "scratch" and not keep_bn
    if target_bn:
        target_bn = reestimate_batchnorm(model, bn_images, mean, std) > 0
    if cfg.mode != "none":
        if source is not None:
            x, y = np.concatenate([x, source[0]]), np.concatenate([y, source[1]])
        _fine_tune(model, x, y, mean, std, cfg, frozen_bn=target_bn)
    return model


def _adaptable_model(base: LoadedModel, cfg: FewShotConfig, classes: list[str]) -> nn.Module:
    if cfg.mode == "scratch":
        c = base.config
        tc = ClassifierTrainConfig(arch=c["arch"], image_size=int(c["image_size"]),
                                   embed_dim=c.get("embed_dim", 128),
                                   hidden_dim=c.get("hidden_dim", 512), dropout=c.get("dropout", 0.2))
        torch.manual_seed(cfg.seed)
        return build_model(tc, len(classes))
    model = copy.deepcopy(base.model)
    # keep the trained rows of the classes the target has
    model.restrict_classes([base.classes.index(c) for c in classes])
    return model


def fine_tune_epochs(cfg: FewShotConfig, n_images: int) -> int:
    """``cfg.epochs``, lowered (to at least 1) so that ``n_images`` x epochs stays within
    ``cfg.max_image_passes``."""
    return max(1, min(cfg.epochs, cfg.max_image_passes // max(1, n_images)))


def _fine_tune(model: nn.Module, x: np.ndarray, y: np.ndarray, mean, std, cfg: FewShotConfig, *,
               frozen_bn: bool = False) -> None:
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    head = [*model.embedding.parameters(), *model.head.parameters()]
    if cfg.mode == "head":
        for p in model.encoder.parameters():
            p.requires_grad_(False)
        groups = [{"params": head, "lr": cfg.lr * cfg.head_lr_mult}]
    elif cfg.mode == "scratch":
        groups = [{"params": list(model.parameters()), "lr": cfg.lr * cfg.head_lr_mult}]
    else:
        groups = [{"params": list(model.encoder.parameters()), "lr": cfg.lr},
                  {"params": head, "lr": cfg.lr * cfg.head_lr_mult}]
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    bs = max(2, min(cfg.batch_size, len(y)))
    epochs = fine_tune_epochs(cfg, len(y))
    steps = max(1, int(np.ceil(len(y) / bs))) * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * s / steps)))
    model.train()
    if cfg.mode == "head":
        model.encoder.eval()  # frozen encoder keeps its batch-norm statistics
    elif frozen_bn:
        freeze_batchnorm(model)  # the target statistics stay as re-estimated
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen).numpy()
        for b in range(0, len(order), bs):
            idx = order[b:b + bs]
            if len(idx) < 2:
                continue
            loss = F.cross_entropy(model(to_batch(x[idx], mean, std, aug=cfg.augment, generator=gen)),
                                   torch.from_numpy(y[idx]), label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    for p in model.parameters():
        p.requires_grad_(True)


def _mix_source(source: TargetData, classes: list[str], cfg: FewShotConfig):
    """``source_mix`` x K source images of the target's classes (stratified, seeded)."""
    keep = np.array([source.classes[i] in classes for i in source.labels])
    names = [source.classes[i] for i in source.labels[keep]]
    keys = [k for k, m in zip(source.keys, keep) if m]
    k = min(int(cfg.source_mix * cfg.shots), len(keys))
    picked = set(few_shot(keys, names, shots=k, seed=cfg.seed + 1000))
    sel = np.array([kk in picked for kk in source.keys]) & keep
    sy = np.array([classes.index(source.classes[i]) for i in source.labels[sel]], np.int64)
    return source.images[sel], sy


def conditions(cfg: FewShotConfig) -> dict[str, FewShotConfig]:
    """The six conditions of the cross-lab ablation, derived from one config (SHOT start and
    label propagation off, in the final labels and in self-training: the study's conditions
    have neither)."""
    cfg = replace(cfg, shot_epochs=0, predict="head", pseudo_from="head")
    return {
        # the study's conditions: our SHOT start is not one of them
        "no source training": replace(cfg, mode="scratch", stain="reinhard"),
        "no fine-tuning": replace(cfg, mode="none", stain="reinhard"),
        "head-only fine-tuning": replace(cfg, mode="head", stain="reinhard"),
        "mixed source+target": replace(cfg, mode="full", stain="reinhard",
                                       source_mix=cfg.source_mix or 4.0),
        "no colour transform": replace(cfg, mode="full", stain="none"),
        "full workflow": replace(cfg, mode="full", stain="reinhard"),
    }
