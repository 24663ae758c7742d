"""Adapting to a new lab without labels by re-estimating batch-norm statistics (AdaBN).

A network trained in one lab normalises every feature map of its encoder with that lab's
mean and variance (the batch-norm running statistics). On another lab's images (other
stain, camera, magnification) those statistics are off, and every later layer sees shifted
inputs. AdaBN (Li, Wang, Shi, Liu & Hou, *Revisiting batch normalization for practical
domain adaptation*, ICLR-W 2017) recomputes them on unlabelled images of the new lab and
keeps every learned weight. It needs no source data and no labels, and takes one pass over
the images.

Only the encoder's 2-D batch-norm layers are re-estimated: the embedding's 1-D batch norm
sits after the domain-specific features and measured worse when re-estimated too. The
running statistics become the exact pooled mean and variance over all target pixels, so
the result does not depend on batch size or order. Few-shot fine-tuning then keeps these
statistics fixed (:func:`freeze_batchnorm`): a handful of shots is too few to estimate them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

#: Where a fine-tuned model's batch-norm statistics come from.
SOURCES = ("target", "source")


def encoder_batchnorms(model: nn.Module) -> list[nn.BatchNorm2d]:
    """The encoder's 2-D batch-norm layers (all of ``model``'s when it has no ``encoder``)."""
    root = getattr(model, "encoder", model)
    return [m for m in root.modules() if isinstance(m, nn.BatchNorm2d) and m.track_running_stats]


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, images: np.ndarray, mean: torch.Tensor,
                         std: torch.Tensor, *, batch_size: int = 64) -> int:
    """Replace the encoder's batch-norm running statistics by those of ``images``.

    Args:
        model: a classifier (or attribute model) with an ``encoder``; changed in place and
            left in eval mode. Weights are untouched.
        images: uint8 ``(N, H, W, 3)`` at the model's input size, N >= 2.
        mean, std: the model's input normalisation.

    Returns:
        The number of layers re-estimated (0 for encoders without batch norm, e.g. ViTs;
        the model is then unchanged).
    """
    from hemascope.train.classifier import to_batch
    from hemascope.train.device import module_device

    layers = encoder_batchnorms(model)
    if not layers or len(images) < 2:
        return 0
    sums: dict[int, list] = {id(m): [0, 0.0, 0.0] for m in layers}

    def collect(module, inputs):
        x = inputs[0].detach().float()
        acc = sums[id(module)]
        acc[0] += x.numel() // x.shape[1]
        acc[1] = acc[1] + x.sum(dim=(0, 2, 3))
        acc[2] = acc[2] + (x * x).sum(dim=(0, 2, 3))

    hooks = [m.register_forward_pre_hook(collect) for m in layers]
    encoder = getattr(model, "encoder", model)
    dev = module_device(model)
    model.eval()
    for m in layers:
        m.train()  # deeper layers see inputs normalised by the target's own statistics
    n = len(images)
    try:
        for i in range(0, n, batch_size):
            chunk = images[i:i + batch_size]
            if len(chunk) < 2:  # batch norm needs two samples: the lone last image goes
                chunk = images[n - 2:n]  # with its neighbour, counted once more
            encoder(to_batch(chunk, mean, std, device=dev))
    finally:
        for h in hooks:
            h.remove()
        model.eval()
    for m in layers:  # exact pooled mean and unbiased variance over every pixel seen
        count, total, squares = sums[id(m)]
        mu = total / count
        var = (squares / count - mu * mu).clamp_min(0) * (count / max(count - 1, 1))
        m.running_mean.copy_(mu.to(m.running_mean.dtype))
        m.running_var.copy_(var.to(m.running_var.dtype))
        if m.num_batches_tracked is not None:
            m.num_batches_tracked.zero_()
    return len(layers)


def freeze_batchnorm(model: nn.Module) -> int:
    """Put the encoder's batch-norm layers in eval mode (call after ``model.train()``): the
    training steps that follow neither use batch statistics there nor update the running
    ones; the embedding's batch norm trains as usual. Returns the number of layers."""
    layers = encoder_batchnorms(model)
    for m in layers:
        m.eval()
    return len(layers)
