"""Do measured cell parts add to the attribute model? Cross-fitted on WBCAtt's val split.

    python benchmarks/attributes_morphometry.py [--cache runs/cache/attr_morph]
        [--name attributes_morphometry]

The attribute model reads size and form from pixels through a network trained with zoom
and crop augmentation, which blurs absolute size. The shipped cell-part U-Net gives the
cell's outline and nucleus, from which :mod:`hemascope.segment.morphometry` measures what
the eye judges: the cell's share of the frame, the nucleus's share, N:C, the nucleus
pieces (lobes), solidity and elongation of nucleus and cell.

For each attribute, a softmax regression (L2, features standardised on the fitting cells)
reads either the attribute head's own log-probabilities alone (``recalibrated``: the
control, since re-weighting the head alone was found worth nothing in
``attributes_bias.py``) or those plus the 8 measurements (``+ measurements``). Both are
fitted on a random half of the 1,030 val cells and scored on the other half, 10 seeded
halvings; compared with the head's own argmax on the same halves (average macro-F1 over
the 11 attributes, the WBCAtt protocol).

Decision rule, fixed before the first run: the measurements are built into a product
feature (a stacked attribute model) if ``+ measurements`` beats the head by at least +0.003
average macro-F1 over the 10 halvings, positive in at least 8 of 10. The test split is not
read by this script.

Writes ``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from _common import machine, shared_data, write_results

MIN_GAIN, MIN_POSITIVE, HALVINGS = 0.003, 8, 10
L2, STEPS, LR = 1e-3, 1500, 0.5


def fit_softmax(x: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """L2-penalised softmax regression by gradient descent (deterministic): the concept
    bottleneck's fitter with no L1 term."""
    from hemascope.explain.concepts import fit_concept_bottleneck

    m = fit_concept_bottleneck(x, y, concepts=[str(i) for i in range(x.shape[1])],
                               classes=[str(i) for i in range(k)], l1=0.0, l2=L2, lr=LR,
                               steps=STEPS)
    return m.weights, m.bias


def features(cells, split: str, cache: Path | None):
    """``(truth, log-probabilities, measurements)`` of a WBCAtt split's cells."""
    from hemascope.attributes.predict import attribute_probabilities
    from hemascope.data.tables import read_wbcatt_any
    from hemascope.io.image import read_image
    from hemascope.segment.morphometry import measure_cells
    from hemascope.segment.predict import segment_arrays

    att, seg = cells
    ds = read_wbcatt_any(shared_data() / "wbcatt" / f"pbc_attr_v1_{split}.csv")
    attrs = att.model.attributes
    truth = {k: np.array([v.index(s.attributes[k]) if s.attributes.get(k) else -1
                          for s in ds.samples]) for k, v in attrs.items()}
    tag = f"{str(att.config.get('weights_sha256'))[:12]}_{str(seg.config.get('weights_sha256'))[:12]}"
    file = cache / f"{split}_{tag}.npz" if cache else None
    if file is not None and file.exists():
        z = np.load(file)
        return truth, {k: z[f"p_{k}"] for k in attrs}, z["measurements"]
    probs: dict[str, list] = {k: [] for k in attrs}
    meas = []
    for i in range(0, len(ds.samples), 256):
        images = [read_image(ds.root / s.path) for s in ds.samples[i:i + 256]]
        p = attribute_probabilities(att, images, tta=1, adjusted=False)
        for k in attrs:
            probs[k].append(p[k])
        meas.append(measure_cells(segment_arrays(seg, images), seg.config["classes"]))
        print(f"{split}: {i + len(images)} / {len(ds.samples)}", flush=True)
    logp = {k: np.log(np.clip(np.concatenate(v), 1e-12, None)) for k, v in probs.items()}
    m = np.concatenate(meas)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(file, measurements=m, **{f"p_{k}": v for k, v in logp.items()})
    return truth, logp, m


def stacked(logp, meas, y, fit, score, k, *, with_meas: bool) -> np.ndarray:
    x = np.concatenate([logp, meas], 1) if with_meas else logp
    mu, sd = x[fit].mean(0), x[fit].std(0) + 1e-6
    z = (x - mu) / sd
    w, b = fit_softmax(z[fit], y[fit], k)
    return (z[score] @ w + b).argmax(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path("runs/cache/attr_morph"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="attributes_morphometry")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hemascope.attributes.bias import macro_f1
    from hemascope.attributes.predict import load_attribute_model
    from hemascope.segment.morphometry import MEASUREMENTS
    from hemascope.segment.predict import load_segmenter

    att, seg = load_attribute_model("default"), load_segmenter("default")
    truth, logp, meas = features((att, seg), "val", args.cache)
    attrs = att.model.attributes
    n = len(meas)
    arms = ("head", "recalibrated", "+ measurements")
    per = {a: {k: [] for k in attrs} for a in arms}
    averages = {a: [] for a in arms}
    for h in range(HALVINGS):
        perm = np.random.default_rng(h).permutation(n)
        halves = (perm[: n // 2], perm[n // 2:])
        f1 = {a: {k: [] for k in attrs} for a in arms}
        for fit, score in (halves, halves[::-1]):  # each half scored once per halving
            for k, values in attrs.items():
                y, kk = truth[k], len(values)
                fit_k, score_k = fit[y[fit] >= 0], score[y[score] >= 0]
                preds = {"head": logp[k][score_k].argmax(1),
                         "recalibrated": stacked(logp[k], meas, y, fit_k, score_k, kk, with_meas=False),
                         "+ measurements": stacked(logp[k], meas, y, fit_k, score_k, kk, with_meas=True)}
                for a in arms:
                    f1[a][k].append(macro_f1(y[score_k], preds[a], kk))
        for a in arms:
            for k in attrs:
                per[a][k].append(float(np.mean(f1[a][k])))
            averages[a].append(float(np.mean([np.mean(f1[a][k]) for k in attrs])))
        print(f"halving {h}: " + ", ".join(f"{a} {averages[a][-1]:.4f}" for a in arms), flush=True)
    gains = np.array(averages["+ measurements"]) - np.array(averages["head"])
    control = np.array(averages["recalibrated"]) - np.array(averages["head"])
    met = bool(gains.mean() >= MIN_GAIN and (gains > 0).sum() >= MIN_POSITIVE)
    # how each measurement separates values on all val cells (a description, not a test)
    lines = ["## Measured cell parts beside the attribute heads (WBCAtt val, cross-fitted halves)", "",
             "| attribute | head | recalibrated head | head + measurements |", "|---|---|---|---|"]
    for k in attrs:
        lines.append(f"| {k} | " + " | ".join(f"{np.mean(per[a][k]):.4f}" for a in arms) + " |")
    lines.append("| **average** | " + " | ".join(f"**{np.mean(averages[a]):.4f}**" for a in arms) + " |")
    lines += ["", f"Each cell is scored by a stacker fitted on the other half of val ({HALVINGS} "
              "seeded halvings, both halves scored). Measurements: " + ", ".join(MEASUREMENTS) + ".",
              "", f"+ measurements minus head: {gains.mean():+.4f} (positive in {(gains > 0).sum()} "
              f"of {HALVINGS}); recalibrated minus head (control): {control.mean():+.4f} "
              f"(positive in {(control > 0).sum()}).",
              f"Rule (>= {MIN_GAIN:+.3f}, positive in >= {MIN_POSITIVE}): "
              f"{'met' if met else 'not met'}. The test split was not read."]
    write_results(args.name, {"averages": averages, "per_attribute": per,
                              "gain": float(gains.mean()), "gains": gains.tolist(),
                              "control_gain": float(control.mean()), "rule_met": met,
                              "measurements": list(MEASUREMENTS), "n_val": n,
                              "settings": {"l2": L2, "steps": STEPS, "lr": LR,
                                           "halvings": HALVINGS},
                              "machine": machine()}, "\n".join(lines))


if __name__ == "__main__":
    main()
