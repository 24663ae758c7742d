"""Figures for reports (matplotlib, imported lazily; the ``plots`` extra).

Every function writes one PNG atomically and returns its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from hemascope.errors import HemascopeError


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise HemascopeError("plots need matplotlib: pip install 'hemascope[plots]'") from None
    return plt


def _save(fig, path: str | Path) -> Path:
    from hemascope.io.atomic import atomic_write

    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return Path(path)


def tsne_2d(features: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """t-SNE (van der Maaten & Hinton 2008) of ``(N, D)`` features to 2-D (scikit-learn)."""
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise HemascopeError("t-SNE needs scikit-learn: pip install 'hemascope[plots]'") from None
    x = np.asarray(features, np.float32).reshape(len(features), -1)
    perplexity = float(max(2, min(30, (len(x) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def scatter_panels(panels: Sequence[tuple[str, np.ndarray, Sequence[str], Sequence[str]]],
                   path: str | Path) -> Path:
    """One row per panel: ``(title, points (N, 2), class labels, data-set labels)``; each
    panel drawn twice, coloured by class and by data set."""
    plt = _plt()
    fig, axes = plt.subplots(len(panels), 2, figsize=(10, 4.2 * len(panels)), squeeze=False)
    for row, (title, pts, classes, sets) in enumerate(panels):
        for col, (labels, what) in enumerate(((classes, "class"), (sets, "data set"))):
            ax = axes[row, col]
            for name in sorted(set(labels)):
                m = np.array([lbl == name for lbl in labels])
                ax.scatter(pts[m, 0], pts[m, 1], s=8, alpha=0.7, label=name)
            ax.set_title(f"{title}: by {what}", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.legend(fontsize=7, markerscale=2, loc="best")
    return _save(fig, path)


def pr_curves(curves: dict, path: str | Path, *, title: str = "") -> Path:
    """Precision-recall curve per class with its AP in the legend."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, c in curves.items():
        ax.step(np.r_[0, c.recall], np.r_[1, c.precision], where="post",
                label=f"{name} (AP {c.average_precision:.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.02)
    ax.set_title(title or "precision-recall per class", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


#: Characters per caption line of :func:`error_gallery` (a 2-inch column at 6.5 pt).
CAPTION_CHARS = 28


def wrap_caption(text: str, width: int = CAPTION_CHARS) -> str:
    """``text`` with every line longer than ``width`` broken at spaces, hyphens or
    underscores (a name such as ``immature_granulocyte`` may break after its underscore);
    a word longer than ``width`` is cut."""
    import textwrap

    zw = "\u200b"  # a zero-width space after each underscore lets textwrap break there
    out = []
    for line in str(text).splitlines() or [""]:
        parts = textwrap.wrap(line.replace("_", "_" + zw), width + line.count("_"),
                              break_on_hyphens=True) or [""]
        out += [p.replace(zw, "").strip() for p in parts]
    return "\n".join(out)


def error_gallery(images: Sequence[np.ndarray], captions: Sequence[str], path: str | Path, *,
                  columns: int = 6, title: str = "") -> Path:
    """Grid of cell images with a caption each (e.g. true / predicted / second best).

    Caption lines longer than a column is wide are wrapped (at spaces, hyphens and
    underscores), and each row is made tall enough for its longest caption, so that
    neighbouring captions and the title never overlap."""
    plt = _plt()
    n = max(1, len(images))
    rows = int(np.ceil(n / columns))
    wrapped = [wrap_caption(cap) for cap in captions]
    lines = max([c.count("\n") + 1 for c in wrapped] or [1])
    fig, axes = plt.subplots(rows, columns, figsize=(2.0 * columns, (1.9 + 0.13 * lines) * rows),
                             squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, cap in zip(axes.ravel(), images, wrapped):
        ax.imshow(img)
        ax.set_title(cap, fontsize=6.5)
    if not len(images):
        axes[0, 0].text(0.5, 0.5, "no errors", ha="center", va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)
