"""Source-free adaptation to a new lab: SHOT (Liang, Hu & Feng, ICML 2020).

DANN and MMD need the source images (PBC) next to the new lab's; a lab that has only our
model and its own unlabelled cells cannot run them. SHOT needs neither source data nor
target labels. It keeps the trained head (the "hypothesis") fixed and moves the encoder
and embedding so that target images land where that head is confident and decisive:

* **information maximisation**: the mean entropy of each prediction goes down (every cell
  gets a clear class) while the entropy of the *average* prediction goes up (the
  predictions do not all collapse onto one class);
* **self-supervised pseudo-labels**: each epoch, class centroids are formed in the
  embedding space from the current soft predictions (cosine geometry), every target image
  takes the label of its nearest centroid, centroids are recomputed from those hard
  labels once more, and a cross-entropy term (weight ``pseudo_weight``) pulls images
  towards them. Centroid labels follow the target's own clusters rather than the
  source-biased head.

Two changes from the paper suit small target sets: the encoder's batch-norm statistics are
first re-estimated on the target (AdaBN, :mod:`hemascope.adapt.batchnorm`) and then kept
fixed, and the learning rate follows a cosine to zero so the last epoch, which is the model
kept, is a settled one (nothing is selected on target labels).

The diversity term assumes every class is present in comparable numbers. It is weighted
by ``diversity`` (1.0 in the paper); restrict the model to the classes the lab really has
(a labelled target does this itself; ``classes=`` for an unlabelled one) so it does not
push predictions onto classes the lab never sees. With labelled shots drawn in proportion
to the classes (as ``hemascope fewshot`` draws them), ``prior="shots"`` replaces the
uniform target of that term by the shots' class shares: the term becomes the KL divergence
of the mean prediction from that prior (the paper's term is this with a uniform prior,
up to a constant), so a lab where most cells are neutrophils is not pushed towards equal
numbers of every type.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from hemascope.adapt.batchnorm import freeze_batchnorm, reestimate_batchnorm
from hemascope.adapt.fewshot import TargetData
from hemascope.adapt.uda import UdaResult, restricted_model, score_target, target_eval
from hemascope.augment import AugmentConfig
from hemascope.errors import DatasetError, HemascopeError
from hemascope.models.artifact import LoadedModel
from hemascope.train.classifier import to_batch


#: What SHOT's diversity term can pull the mean prediction towards (``ShotConfig.prior``).
PRIORS = ("uniform", "shots")


@dataclass
class ShotConfig:
    """One SHOT run (defaults: the paper's loss weights; SGD with momentum, cosine to zero).

    Attributes:
        epochs: passes over (at most ``max_images`` of) the target images.
        diversity: weight of the diversity term (entropy of the mean prediction).
        pseudo_weight: weight of the centroid pseudo-label cross-entropy (beta = 0.3).
        max_images: images drawn per epoch from a large target folder, so one epoch stays
            in minutes on a CPU.
        prior: what the diversity term pulls the mean prediction towards: ``uniform`` (the
            paper) or ``shots``, the class shares of the labelled shots (add-half
            smoothed; uniform when no shots are given).
    """

    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    diversity: float = 1.0
    pseudo_weight: float = 0.3
    max_images: int = 2000
    prior: str = "uniform"
    seed: int = 0
    threads: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        from hemascope.train.config import check_options

        check_options(self)

    @property
    def method(self) -> str:
        return "shot"

    def to_dict(self) -> dict:
        return {"method": self.method, **asdict(self)}


def information_maximization(logits: torch.Tensor, diversity: float = 1.0,
                             prior: torch.Tensor | None = None) -> torch.Tensor:
    """Mean per-sample entropy minus ``diversity`` x entropy of the mean prediction, or,
    with a class ``prior``, plus ``diversity`` x KL(mean prediction || prior) (the same
    term, up to a constant, when the prior is uniform)."""
    p = F.softmax(logits, dim=1)
    entropy = -(p * F.log_softmax(logits, dim=1)).sum(1).mean()
    mean = p.mean(0)
    target = 0.0 if prior is None else torch.log(prior)
    return entropy + diversity * (mean * (torch.log(mean + 1e-6) - target)).sum()


def shot_prior(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Class shares of labelled shots, add-half smoothed so no class gets zero."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=n_classes)[:n_classes] + 0.5
    return torch.from_numpy(counts / counts.sum()).float()


def centroid_pseudo_labels(features: torch.Tensor, probs: torch.Tensor, *,
                           refinements: int = 1,
                           anchors: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """SHOT's pseudo-labels: nearest class centroid in cosine geometry.

    Centroids start as the probability-weighted means of the L2-normalised ``features``
    (N, D); each of ``refinements`` rounds recomputes them from the hard labels. A class no
    image is assigned to keeps its previous centroid. ``anchors`` (features, class indices)
    of labelled images, if given, count in every centroid with their true class.
    """
    f = F.normalize(features.float(), dim=1)
    k = probs.shape[1]
    fixed = torch.zeros(k, f.shape[1])
    if anchors is not None and len(anchors[1]):
        fixed = F.one_hot(anchors[1], k).float().T @ F.normalize(anchors[0].float(), dim=1)
    centroids = F.normalize(probs.float().T @ f + fixed, dim=1)
    labels = (f @ centroids.T).argmax(1)
    for _ in range(refinements):
        onehot = F.one_hot(labels, k).float()
        sums = onehot.T @ f + fixed
        empty = sums.abs().sum(1) == 0
        sums[empty] = centroids[empty]
        centroids = F.normalize(sums, dim=1)
        labels = (f @ centroids.T).argmax(1)
    return labels


def adapt_source_free(target: TargetData, base: LoadedModel, cfg: ShotConfig, *,
                      target_labelled: bool = True, classes: list[str] | None = None,
                      shots: tuple[np.ndarray, np.ndarray] | None = None,
                      log: Callable[[str], None] = lambda s: None) -> UdaResult:
    """Adapt ``base`` to the ``target`` images with SHOT; no source data, no target labels.

    The model keeps ``classes`` if given, else the classes of a labelled target (labels are
    used only to report accuracy before and after), else all of the base model's.
    ``shots`` (uint8 images, indices into the classes), if given, make it semi-supervised:
    they anchor the class centroids with their true classes and add a cross-entropy term
    (label smoothing 0.1) on a batch of them at every step.

    Raises:
        DatasetError: fewer than 2 target images.
        HemascopeError: a class not in the base model, or a bad setting.
    """
    if cfg.epochs < 1 or cfg.batch_size < 2 or cfg.max_images < 2:
        raise HemascopeError("SHOT needs epochs >= 1, batch size >= 2 and max images >= 2")
    if len(target.images) < 2:
        raise DatasetError(f"need at least 2 target images (got {len(target.images)})")
    if classes is None:
        labelled = target_labelled and len(target.labels)
        classes = [c for c in base.classes if c in target.classes] if labelled else list(base.classes)
    unknown = [c for c in classes if c not in base.classes]
    if unknown or len(classes) < 2:
        raise HemascopeError(f"classes {unknown or classes} are not 2 or more of the model's "
                             f"classes {base.classes}")
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    mean, std = base.normalisation
    model = restricted_model(base, classes)
    t_eval = target_eval(target, classes) if target_labelled else None
    before = score_target(model, t_eval, mean, std, classes)
    # per-epoch target accuracy (a report only) while it costs no more than an epoch
    track = t_eval is not None and len(t_eval[1]) <= cfg.max_images
    fixed_bn = reestimate_batchnorm(model, target.images, mean, std) > 0
    for p in model.head.parameters():
        p.requires_grad_(False)  # the source hypothesis stays as trained
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay,
                          nesterov=True)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = min(len(target.images), cfg.max_images)
    bs = min(cfg.batch_size, n)
    per_epoch = n // bs
    total = max(1, cfg.epochs * per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * s / total)))
    history = []
    if shots is not None and len(shots[1]) == 0:
        shots = None
    prior = shot_prior(shots[1], len(classes)) if cfg.prior == "shots" and shots is not None else None
    for epoch in range(cfg.epochs):
        pick = torch.randperm(len(target.images), generator=gen)[:n].numpy()
        x = target.images[pick]
        emb, logits = embed_all(model, x, mean, std)
        anchors = None
        if shots is not None:
            anchors = (embed_all(model, shots[0], mean, std)[0], torch.from_numpy(shots[1]))
        labels = centroid_pseudo_labels(emb, F.softmax(logits, 1), anchors=anchors)
        changed = float((labels != logits.argmax(1)).float().mean())
        model.train()
        model.head.eval()  # frozen hypothesis: no dropout, its batch norm keeps source statistics
        if fixed_bn:
            freeze_batchnorm(model)
        sums = {"infomax": 0.0, "pseudo": 0.0}
        order = torch.randperm(n, generator=gen).numpy()
        for b in range(per_epoch):
            idx = order[b * bs:(b + 1) * bs]
            out = model(to_batch(x[idx], mean, std, aug=cfg.augment, generator=gen))
            im = information_maximization(out, cfg.diversity, prior)
            ce = F.cross_entropy(out, labels[idx])
            loss = im + cfg.pseudo_weight * ce
            if shots is not None:
                # at least two (drawn with replacement): batch norm cannot train on one
                si = torch.randint(0, len(shots[1]), (max(2, min(bs, len(shots[1]))),), generator=gen).numpy()
                sx = to_batch(shots[0][si], mean, std, aug=cfg.augment, generator=gen)
                loss = loss + F.cross_entropy(model(sx), torch.from_numpy(shots[1][si]),
                                              label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            sums["infomax"] += im.item()
            sums["pseudo"] += ce.item()
        row = {"epoch": epoch + 1, **{k: v / max(1, per_epoch) for k, v in sums.items()},
               "pseudo_labels_changed": round(changed, 4)}
        if track:
            row["target_accuracy"] = score_target(model, t_eval, mean, std, classes).accuracy
        history.append(row)
        log(f"shot epoch {epoch + 1}/{cfg.epochs} infomax {row['infomax']:.4f} pseudo "
            f"{row['pseudo']:.4f} ({changed:.0%} of centroid labels differ from the head's)"
            + (f" target acc {row['target_accuracy']:.4f}" if track else ""))
    for p in model.parameters():
        p.requires_grad_(True)
    after = score_target(model, t_eval, mean, std, classes)
    return UdaResult(model.eval(), classes, before, after, history, time.time() - t0)


@torch.no_grad()
def embed_all(model, images: np.ndarray, mean, std, batch: int = 64, *, views: int = 1):
    """Embeddings and logits ``(torch.Tensor, torch.Tensor)`` of cached uint8 images, in eval
    mode, without gradients; the model is left in eval mode.

    ``views`` > 1 averages over that many flips/rotations
    (:func:`hemascope.classify.dihedral_views`): the mean embedding, and as logits the log
    of the mean softmax (so that a softmax of them gives the view-averaged probabilities).
    """
    from hemascope.classify import dihedral_views

    model.eval()
    embs, logits = [], []
    for b in range(0, len(images), batch):
        x = to_batch(images[b:b + batch], mean, std)
        if views == 1:
            e = model.embed(x)
            embs.append(e)
            logits.append(model.forward_head(e))
            continue
        es = [model.embed(v.contiguous(memory_format=torch.channels_last))
              for v in dihedral_views(x, views)]
        embs.append(torch.stack(es).mean(0))
        probs = torch.stack([torch.softmax(model.forward_head(e).float(), 1) for e in es]).mean(0)
        logits.append(probs.clamp_min(1e-12).log())
    return torch.cat(embs), torch.cat(logits)
