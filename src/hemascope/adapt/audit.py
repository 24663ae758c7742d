"""Which of a lab's labels look wrong: confident learning on cross-validated probabilities.

A lab that adapts a model with its own labelled cells trusts those labels, and a few
wrong ones (a monocyte filed as a neutrophil) teach the model the wrong thing and score it
unfairly. Confident learning (Northcutt, Jiang & Chuang, JAIR 2021) finds them without
any clean reference:

1. Every cell gets class probabilities from a model that never saw its label: the base
   classifier embeds every cell (batch-norm statistics from the lab's own images, as
   :mod:`hemascope.adapt.suggest` does; by default 4 flips/rotations averaged and joined
   with the shipped attribute model's embedding, as ``hemascope fewshot`` builds its
   graph), and a softmax regression on those features is fitted on the other folds of a
   stratified K-fold split and applied to the held-out one.
2. Each class gets a threshold: the mean probability of that class over the cells
   labelled with it (how sure the model is, on average, about that class's own cells).
3. A cell is *suspect* when, among the classes whose probability reaches their threshold,
   the most probable is not its label. That class is the *suggested* one.

``method="argmax"`` (the plain baseline) flags every cell whose most probable class is not
its label. Classes with fewer than two images cannot be cross-validated: their cells are
not audited and they are never suggested. The regression's L2 weight is ``1 / n`` on
centred, unit-length features (scikit-learn's default ``C = 1``). Pure numpy apart from
the embedding.

The same rule audits the attribute labels of a table (:func:`audit_attribute_labels`),
where the attribute model's own probabilities are out of sample already.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hemascope.errors import DatasetError

METHODS = ("confident", "argmax")
#: Fewest images a class needs to be audited (one to hold out, one to learn from).
MIN_PER_CLASS = 2


@dataclass
class LabelAudit:
    """Out-of-fold probabilities and verdicts for every cell of a labelled set.

    ``probs`` has one column per audited class (``audited_classes``, indices into
    ``classes``); rows of cells that were not audited are NaN. ``suggested`` is the class
    index a suspect cell more likely belongs to, -1 elsewhere.
    """

    classes: list[str]
    labels: np.ndarray
    audited: np.ndarray  # bool (n,)
    audited_classes: list[int]
    probs: np.ndarray  # (n, len(audited_classes))
    thresholds: np.ndarray  # (len(audited_classes),)
    suspect: np.ndarray  # bool (n,)
    suggested: np.ndarray  # int (n,)
    method: str
    features: str = ""  # what described the cells (FEATURES), where known

    def _probability_of(self, cls: np.ndarray, rows: np.ndarray) -> np.ndarray:
        out = np.full(len(self.labels), np.nan)
        col = {c: j for j, c in enumerate(self.audited_classes)}
        for i in np.flatnonzero(rows):
            out[i] = self.probs[i, col[int(cls[i])]]
        return out

    def label_probability(self) -> np.ndarray:
        """Each cell's out-of-fold probability of its own label (NaN where not audited)."""
        return self._probability_of(self.labels, self.audited)

    def suggested_probability(self) -> np.ndarray:
        """Each suspect cell's probability of its suggested class (NaN elsewhere)."""
        return self._probability_of(self.suggested, self.suspect)

    def order(self) -> np.ndarray:
        """Cell indices, suspects first, each group from the least probable label up; cells
        that were not audited last."""
        p = self.label_probability()
        rank = np.where(self.suspect, 0, np.where(self.audited, 1, 2))
        return np.lexsort((np.nan_to_num(p, nan=2.0), rank))

    def confusions(self) -> dict[str, int]:
        """Suspect counts by ``"label -> suggested"``, most frequent first."""
        pairs: dict[str, int] = {}
        for i in np.flatnonzero(self.suspect):
            key = f"{self.classes[self.labels[i]]} -> {self.classes[self.suggested[i]]}"
            pairs[key] = pairs.get(key, 0) + 1
        return dict(sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0])))


def stratified_folds(labels: np.ndarray, folds: int, *, seed: int = 0) -> np.ndarray:
    """Fold index per row: each class's rows shuffled and dealt out in turn, so that every
    fold holds about its share of every class (a class with fewer rows than folds lands in
    that many different folds)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(labels), np.int64)
    start = 0
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        fold[rows] = (start + np.arange(len(rows))) % folds
        start = (start + len(rows)) % folds  # the next class starts where this one stopped
    return fold


def _prepare(x: np.ndarray, centre: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64) - centre
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def out_of_fold_probs(features: np.ndarray, labels: np.ndarray, n_classes: int, *,
                      folds: int = 5, seed: int = 0, steps: int = 1000) -> np.ndarray:
    """``(n, n_classes)`` probabilities of each row from a softmax regression fitted on the
    other folds (features centred on the training folds' mean and scaled to unit length;
    L2 weight ``1 / n_train``). Every class needs at least two rows."""
    from hemascope.explain.concepts import fit_concept_bottleneck

    features = np.asarray(features, np.float64)
    labels = np.asarray(labels, np.int64)
    counts = np.bincount(labels, minlength=n_classes)
    if counts.min() < MIN_PER_CLASS:
        raise DatasetError(f"every class needs at least {MIN_PER_CLASS} images to be "
                           f"cross-validated (counts {counts.tolist()})")
    folds = max(2, min(folds, len(labels)))
    fold = stratified_folds(labels, folds, seed=seed)
    names = [str(j) for j in range(features.shape[1])]
    classes = [str(c) for c in range(n_classes)]
    probs = np.zeros((len(labels), n_classes))
    for f in range(folds):
        test = fold == f
        if not test.any():
            continue
        train = ~test
        centre = features[train].mean(0)
        xtr = _prepare(features[train], centre)
        model = fit_concept_bottleneck(xtr, labels[train], concepts=names, classes=classes,
                                       l1=0.0, l2=1.0 / train.sum(), steps=steps)
        probs[test] = model.predict_proba(_prepare(features[test], centre))
    return probs


def class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per class, the mean probability of that class over the rows labelled with it."""
    k = probs.shape[1]
    return np.array([probs[labels == j, j].mean() if (labels == j).any() else 1.0
                     for j in range(k)])


def find_label_issues(probs: np.ndarray, labels: np.ndarray, *, method: str = "confident"
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(suspect, suggested, thresholds)`` for rows with probabilities ``probs`` and given
    ``labels`` (indices into the columns); ``suggested`` is -1 for rows not suspect."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS} (got {method!r})")
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels, np.int64)
    thresholds = class_thresholds(probs, labels)
    if method == "argmax":
        best = probs.argmax(1)
    else:
        above = probs >= thresholds[None, :] - 1e-12
        masked = np.where(above, probs, -np.inf)
        best = np.where(above.any(1), masked.argmax(1), labels)  # no confident class: keep
    suspect = best != labels
    return suspect, np.where(suspect, best, -1), thresholds


def audit_labels(features: np.ndarray, labels: np.ndarray, classes: list[str], *,
                 method: str = "confident", folds: int = 5, seed: int = 0) -> LabelAudit:
    """Audit the labels of a set from per-cell features (e.g. the base model's embeddings).

    Raises:
        DatasetError: fewer than two classes with at least two images each.
    """
    labels = np.asarray(labels, np.int64)
    counts = np.bincount(labels, minlength=len(classes))
    kept = [c for c in range(len(classes)) if counts[c] >= MIN_PER_CLASS]
    if len(kept) < 2:
        raise DatasetError(f"auditing labels needs at least two classes with {MIN_PER_CLASS} "
                           f"or more images each (counts: "
                           f"{dict(zip(classes, counts.tolist()))})")
    audited = np.isin(labels, kept)
    local = np.searchsorted(np.array(kept), labels[audited])
    probs_a = out_of_fold_probs(np.asarray(features)[audited], local, len(kept), folds=folds,
                                seed=seed)
    suspect_a, suggested_a, thresholds = find_label_issues(probs_a, local, method=method)
    n = len(labels)
    probs = np.full((n, len(kept)), np.nan)
    probs[audited] = probs_a
    suspect = np.zeros(n, bool)
    suspect[audited] = suspect_a
    suggested = np.full(n, -1, np.int64)
    suggested[audited] = np.where(suspect_a, np.array(kept)[np.maximum(suggested_a, 0)], -1)
    return LabelAudit(list(classes), labels, audited, kept, probs, thresholds, suspect,
                      suggested, method)


def audit_attribute_labels(probs: dict[str, np.ndarray], truth: dict[str, list[str]],
                           values: dict[str, list[str]], *, method: str = "confident"
                           ) -> dict[str, LabelAudit]:
    """Audit a table's attribute labels with an attribute model's value probabilities.

    ``probs`` maps attribute -> ``(n, len(values[attribute]))`` from a model that never
    trained on these cells (the shipped one trained on WBCAtt's train split only);
    ``truth`` maps attribute -> each cell's value (``""`` where the table has none: not
    audited). Thresholds come from the cells' own labels, per attribute, as for cell types.
    Measured against WBCAtt's second annotators in ``benchmarks/audit_attributes.py``.
    """
    out = {}
    for name, vals in values.items():
        p = np.asarray(probs[name], np.float64)
        labels = np.array([vals.index(v) if v else -1 for v in truth[name]], np.int64)
        known = labels >= 0
        suspect = np.zeros(len(labels), bool)
        suggested = np.full(len(labels), -1, np.int64)
        thresholds = np.ones(len(vals))
        if known.any():
            s_k, g_k, thresholds = find_label_issues(p[known], labels[known], method=method)
            suspect[known], suggested[known] = s_k, g_k
        rows = np.where(known[:, None], p, np.nan)
        out[name] = LabelAudit(list(vals), labels, known, list(range(len(vals))), rows,
                               thresholds, suspect, suggested, method)
    return out


#: What describes each cell: the base classifier's embedding alone; joined with the
#: shipped attribute model's (as ``hemascope fewshot`` builds its graph); or the embedding
#: of the base model after SHOT on the set's images (no label read) joined with the
#: attribute model's.
FEATURES = ("classifier", "classifier+attributes", "shot+attributes")
#: The defaults. ``benchmarks/audit_labels.py`` chose the rule and 4 views (and
#: classifier+attributes over the classifier alone: dev F1 0.623 against 0.559-0.579);
#: ``benchmarks/audit_labels_shot.py`` then SHOT's features (dev F1 0.689; rule: +0.02).
DEFAULT_FEATURES, DEFAULT_VIEWS, DEFAULT_METHOD = "shot+attributes", 4, "confident"


def audit_features(base, images: np.ndarray, *, features: str = DEFAULT_FEATURES,
                   views: int = DEFAULT_VIEWS, attributes: str = "default",
                   classes: list[str] | None = None, log=None) -> tuple[np.ndarray, str]:
    """Per-cell features for :func:`audit_labels` and the kind actually used.

    The base model's embedding has batch-norm statistics re-estimated on ``images`` and
    ``views`` flips/rotations averaged. ``shot+attributes`` first adapts the base model to
    ``images`` by SHOT (10 epochs, :func:`hemascope.adapt.fewshot.source_free_base`; only the
    names of the set's ``classes`` are read, no label). SHOT keeps the base model's head, so
    a set with a class the base lacks (or fewer than two classes) falls back to
    ``classifier+attributes`` and says so through ``log``. The attribute model's embedding
    is joined with :func:`hemascope.adapt.fewshot.join_embeddings`.
    """
    import copy

    from hemascope.adapt.batchnorm import reestimate_batchnorm
    from hemascope.adapt.shot import embed_all

    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES} (got {features!r})")
    mean, std = base.normalisation
    if features == "shot+attributes":
        known = classes is not None and len(classes) >= 2 and set(classes) <= set(base.classes)
        if known:
            from hemascope.adapt.fewshot import FewShotConfig, source_free_base

            model = source_free_base(base, list(classes), images, FewShotConfig()).model
        else:
            features = "classifier+attributes"
            if log:
                log("SHOT needs classes the base model has; the audit uses "
                    "classifier+attributes features instead")
    if features != "shot+attributes":
        model = copy.deepcopy(base.model)
        reestimate_batchnorm(model, images, mean, std)
    emb = embed_all(model, images, mean, std, views=views)[0].float().numpy()
    if features == "classifier":
        return emb, features
    from hemascope.adapt.fewshot import join_embeddings
    from hemascope.attributes.predict import attribute_embeddings, load_attribute_model

    extra = attribute_embeddings(load_attribute_model(attributes), list(images), views=views)
    return join_embeddings(emb, extra), features


def audit_target(base, target, *, method: str = DEFAULT_METHOD, folds: int = 5, seed: int = 0,
                 features: str = DEFAULT_FEATURES, views: int = DEFAULT_VIEWS,
                 attributes: str = "default", log=None) -> LabelAudit:
    """Audit a labelled target set (:func:`hemascope.adapt.fewshot.load_target`) with the
    features of :func:`audit_features`."""
    from dataclasses import replace

    x, used = audit_features(base, target.images, features=features, views=views,
                             attributes=attributes, classes=target.classes, log=log)
    audit = audit_labels(x, target.labels, target.classes, method=method, folds=folds,
                         seed=seed)
    return replace(audit, features=used)
