"""The cross-lab study's analysis figures for one adaptation.

t-SNE of flattened images (raw / colour-standardised) and of 128-d embeddings (base model
/ adapted model), each coloured by class and by data set; precision-recall curves per
class on the target; a gallery of wrong target predictions with their second-best class.
Target images that were shots of the adapted model (its ``shots.txt``) are left out of
the PR curves and the gallery.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hemascope.adapt.fewshot import TargetData
from hemascope.data.splits import few_shot
from hemascope.evaluate.pr import per_class_pr
from hemascope.io.atomic import write_json
from hemascope.models.artifact import LoadedModel
from hemascope.report import plots
from hemascope.train.classifier import predict_probs, to_batch


def _standardised(model: LoadedModel, images: np.ndarray) -> np.ndarray:
    """The images as the model sees them: its colour transform applied, if it has one."""
    from hemascope.stain import StainReference, standardize

    if model.config.get("stain_reference"):
        return standardize(images, reference=StainReference.from_dict(model.config["stain_reference"]))
    return images


@torch.inference_mode()
def _embed(model: LoadedModel, images: np.ndarray) -> np.ndarray:
    x, (mean, std) = _standardised(model, images), model.normalisation
    model.model.eval()
    return torch.cat([model.model.embed(to_batch(x[i:i + 64], mean, std))
                      for i in range(0, len(x), 64)]).numpy()


def _probs(model: LoadedModel, images: np.ndarray) -> np.ndarray:
    return predict_probs(model.model, _standardised(model, images), *model.normalisation)


def _subsample(data: TargetData, n: int, seed: int) -> tuple[np.ndarray, list[str], list[str]]:
    names = [data.classes[i] for i in data.labels]
    if len(names) > n:
        keep = set(few_shot(data.keys, names, shots=n, seed=seed))
        idx = np.array([i for i, k in enumerate(data.keys) if k in keep])
    else:
        idx = np.arange(len(names))
    return data.images[idx], [names[i] for i in idx], [data.keys[i] for i in idx]


def adaptation_report(target: TargetData, out_dir: str | Path, *, base: LoadedModel,
                      adapted: LoadedModel | None = None, source: TargetData | None = None,
                      max_per_set: int = 300, seed: int = 0, source_name: str = "source",
                      target_name: str = "target") -> dict:
    """Write the figures to ``out_dir`` and return a summary (paths, AP per class)."""
    from hemascope.adapt.fewshot import source_style
    from hemascope.stain import standardize

    out = Path(out_dir)
    t_img, t_cls, t_keys = _subsample(target, max_per_set, seed)
    sets = [(target_name, t_img, t_cls)]
    if source is not None:
        s_img, s_cls, _ = _subsample(source, max_per_set, seed)
        sets.insert(0, (source_name, s_img, s_cls))
    images = np.concatenate([s[1] for s in sets])
    classes = [c for s in sets for c in s[2]]
    groups = [s[0] for s in sets for _ in s[2]]
    small = lambda a: a[:, ::4, ::4].reshape(len(a), -1).astype(np.float32) / 255  # noqa: E731
    panels = [("images, raw", plots.tsne_2d(small(images), seed=seed), classes, groups)]
    try:
        style = source_style(base)
        std_imgs = np.concatenate([s[1] if s[0] == source_name else standardize(s[1], reference=style)
                                   for s in sets])
        panels.append(("images, colour-standardised",
                       plots.tsne_2d(small(std_imgs), seed=seed), classes, groups))
    except Exception:  # a base model without a recorded style: no standardised panel
        pass
    files = {"tsne_images": str(plots.scatter_panels(panels, out / "tsne_images.png"))}
    emb_panels = [("embeddings, base model", plots.tsne_2d(_embed(base, images), seed=seed),
                   classes, groups)]
    if adapted is not None:
        emb_panels.append(("embeddings, adapted model",
                           plots.tsne_2d(_embed(adapted, images), seed=seed), classes, groups))
    files["tsne_embeddings"] = str(plots.scatter_panels(emb_panels, out / "tsne_embeddings.png"))

    model = adapted or base
    shots = _shots_of(model)
    keep = np.array([k not in shots for k in target.keys])
    timg = target.images[keep]
    tnames = [target.classes[i] for i in target.labels[keep]]
    model_classes = model.classes
    ok = np.array([n in model_classes for n in tnames])
    timg, tnames = timg[ok], [n for n, o in zip(tnames, ok) if o]
    probs = _probs(model, timg)
    y = np.array([model_classes.index(n) for n in tnames])
    present = sorted(set(y.tolist()))
    curves = per_class_pr(probs[:, present], np.searchsorted(present, y),
                          [model_classes[i] for i in present])
    files["pr_curves"] = str(plots.pr_curves(curves, out / "pr_curves.png",
                                             title=f"{target_name}: precision-recall per class"))
    order = np.argsort(-probs, 1)
    wrong = np.flatnonzero(order[:, 0] != y)
    caps = [f"true {model_classes[y[i]]}\npred {model_classes[order[i, 0]]} "
            f"{probs[i, order[i, 0]]:.2f}\n2nd {model_classes[order[i, 1]]} {probs[i, order[i, 1]]:.2f}"
            for i in wrong[:48]]
    files["errors"] = str(plots.error_gallery([timg[i] for i in wrong[:48]], caps,
                                              out / "errors.png",
                                              title=f"{len(wrong)} wrong of {len(y)}"))
    summary = {"files": files, "n_target_evaluated": int(len(y)), "n_wrong": int(len(wrong)),
               "average_precision": {k: c.average_precision for k, c in curves.items()},
               "excluded_shots": int((~keep).sum())}
    write_json(out / "analysis.json", summary)
    return summary


def _shots_of(model: LoadedModel) -> set[str]:
    rel = (model.config.get("training") or {}).get("shots_file")
    if not rel:
        return set()
    f = (model.path / rel).resolve()
    return set(f.read_text().split()) if f.is_file() else set()
