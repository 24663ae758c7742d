"""Classes the base model never learned: new head rows imprinted from the shots.

A lab's folder may hold cell types that the base classifier has no output for (blasts,
plasma cells, smudge cells in a bone-marrow set, for a model trained on peripheral blood).
Few-shot adaptation gives each such class one new row of the last layer, set from its
labelled shots before any training (weight imprinting, Qi, Brown & Lowe, "Low-shot
learning with imprinted weights", CVPR 2018): the direction of the class's mean hidden
feature, with the mean norm and mean bias of the trained rows, so the new class starts on
the same scale as the old ones. Fine-tuning, SHOT and label propagation then treat it like
any other class.

The hidden features are taken with batch-norm statistics re-estimated on the target's
images (AdaBN), as every later step of the adaptation sees them.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from hemascope.adapt.batchnorm import reestimate_batchnorm
from hemascope.models.artifact import LoadedModel
from hemascope.train.classifier import to_batch

#: bias below every trained row's, for a new class with no shot to imprint from (a fold of
#: cross-validation inside the shots): it is then never predicted unless training moves it
NO_SHOT_BIAS_MARGIN = 10.0


def new_classes(base: LoadedModel, classes: list[str]) -> list[str]:
    """The classes of ``classes`` that ``base`` has no output for, in their order."""
    return [c for c in classes if c not in base.classes]


@torch.no_grad()
def hidden_features(model: torch.nn.Module, images: np.ndarray, mean: torch.Tensor,
                    std: torch.Tensor, *, batch: int = 64) -> torch.Tensor:
    """The input of the last layer ``(N, hidden)`` for uint8 images, in eval mode."""
    model.eval()
    return torch.cat([model.head[:-1](model.embed(to_batch(images[b:b + batch], mean, std)))
                      for b in range(0, len(images), batch)])


@torch.no_grad()
def imprint_classes(base: LoadedModel, classes: list[str], x: np.ndarray, y: np.ndarray,
                    target_images: np.ndarray) -> LoadedModel:
    """``base`` with one output more for each class of ``classes`` that it lacks.

    Args:
        base: the model to extend (not changed).
        classes: the target's classes; ``y`` indexes into it.
        x, y: the labelled shots (uint8 images at the model's input size, class indices).
        target_images: all of the target's images, for the batch-norm statistics.

    Returns:
        ``base`` itself when it has every class, else a copy whose classes are its own
        followed by the new ones. A new class with no shot in ``y`` gets a zero row and a
        bias far below the others.
    """
    new = new_classes(base, classes)
    if not new:
        return base
    mean, std = base.normalisation
    probe = copy.deepcopy(base.model)
    reestimate_batchnorm(probe, target_images, mean, std)
    h = hidden_features(probe, x, mean, std) if len(x) else None
    last = base.model.head[-1]
    scale = float(last.weight.norm(dim=1).mean())
    rows, biases = [], []
    for c in new:
        mine = np.flatnonzero(y == classes.index(c))
        if h is None or not len(mine):
            rows.append(torch.zeros(last.in_features))
            biases.append(float(last.bias.min()) - NO_SHOT_BIAS_MARGIN)
            continue
        centre = h[torch.from_numpy(mine)].mean(0)
        rows.append(centre / centre.norm().clamp_min(1e-12) * scale)
        biases.append(float(last.bias.mean()))
    model = copy.deepcopy(base.model)
    model.add_classes(torch.stack(rows), torch.tensor(biases))
    return LoadedModel(model, {**base.config, "classes": base.classes + new}, base.path)
