"""Finding wrong boxes in annotated smear fields (``hemascope audit --what boxes``): errors
injected into the CBC annotations, found or not.

The shipped detector trained on CBC's train split only. On its val split (60 fields, the
*dev* set: it chose the detector's epoch and working size, never its weights) and test
split (60 fields, reported), three kinds of annotation error are injected at once, each
into 5 % of the boxes (seeded), and the audit (``hemascope.detect.audit``) sees only the
damaged annotations:
- **deleted**: a box removed (found if a ``missing`` issue overlaps it by IoU >= 0.5);
- **class flipped**: a box given another of the 3 classes (found if a ``class`` issue
  names it; *corrected* if the suggested class is the original one);
- **spurious**: a box added at a random place of the field, its size copied from a random
  box of the field, with a random class (found if any issue names it).

Scored per run: recall per kind, the share of all issues that are injected errors
(precision; issues on untouched boxes count against it, though some may be real errors of
the annotators), and F1 over all injected errors. Predictions are made once per field
(the annotations change, not the images).

**Decision rules.** The first run (commit 248bb58's results) compared 1 and 4 views under
the rule fixed before it: the higher mean F1 over dev runs (val, seeds 100-104), within 0.01
1 view. It chose 1 view (0.255 against 0.264), so this version runs 1 view only. That run also
showed the first design's ``unmatched`` rule flagging 371 of the test split's ~800
untouched red-cell boxes: a box counted as on nothing unless a detection at the class's
*mean* score touched it, and the detector scores half of the real red cells below their
mean. This version therefore compares where the confidence bars come from, fixed before
its run:
- the class thresholds: the mean score of annotated cells (confident learning), or the
  detector's counting thresholds (``count_thresholds`` in its config, chosen on val to
  count cells);
- the bar for ``unmatched``: the same thresholds, or any detection the model outputs
  (score >= 0.05).
The CLI default is the variant with the highest mean F1 over the dev runs; within 0.01,
the one with the fewest issues on val's own annotations. The tables report test, seeds
0-9, and the issues on both splits' own annotations.

    python benchmarks/audit_boxes.py        # ~3 min on 2 CPU threads
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import machine, shared_data, write_results

RATE = 0.05
VIEWS = 1
#: name: (class thresholds from "mean" scores or the detector's "count" thresholds,
#: the bar for unmatched: None = those thresholds, else a score)
VARIANTS = {"mean thresholds": ("mean", None),
            "mean thresholds, unmatched = no detection": ("mean", 0.05),
            "counting thresholds": ("count", None),
            "counting thresholds, unmatched = no detection": ("count", 0.05)}
DEV_SEEDS = (100, 101, 102, 103, 104)
REPORT_SEEDS = tuple(range(10))
TIE = 0.01


def inject(truths: list[tuple[np.ndarray, np.ndarray]], shapes: list[tuple[int, int]],
           n_classes: int, seed: int) -> tuple[list, dict]:
    """Damaged annotations and what was done: ``{"deleted": [(field, box)], "flipped":
    [(field, new index, original label)], "spurious": [(field, new index)]}``."""
    rng = np.random.default_rng(seed)
    every = [(f, j) for f, (b, _) in enumerate(truths) for j in range(len(b))]
    n = max(1, int(round(RATE * len(every))))
    picks = rng.permutation(len(every))
    deleted = {every[i] for i in picks[:n]}
    flipped = {every[i] for i in picks[n:2 * n]}
    out, log = [], {"deleted": [], "flipped": [], "spurious": []}
    for f, (boxes, labels) in enumerate(truths):
        keep_b, keep_l = [], []
        for j in range(len(boxes)):
            if (f, j) in deleted:
                log["deleted"].append((f, boxes[j].copy()))
                continue
            lab = int(labels[j])
            if (f, j) in flipped:
                new = int(rng.choice([c for c in range(1, n_classes + 1) if c != lab]))
                log["flipped"].append((f, len(keep_b), lab))
                lab = new
            keep_b.append(boxes[j])
            keep_l.append(lab)
        out.append([keep_b, keep_l])
    for _ in range(n):
        f = int(rng.integers(len(truths)))
        boxes = truths[f][0]
        h, w = shapes[f]
        if len(boxes):
            b = boxes[rng.integers(len(boxes))]
            bw, bh = b[2] - b[0], b[3] - b[1]
        else:
            bw, bh = 40.0, 40.0
        bw, bh = float(np.clip(bw, 8, w / 2)), float(np.clip(bh, 8, h / 2))
        x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        log["spurious"].append((f, len(out[f][0])))
        out[f][0].append(np.array([x0, y0, x0 + bw, y0 + bh]))
        out[f][1].append(int(rng.integers(1, n_classes + 1)))
    damaged = [(np.array(b, float).reshape(-1, 4), np.array(lab, np.int64)) for b, lab in out]
    return damaged, log


def score(issues, damaged, log) -> dict:
    from hemascope.detect.ensemble import iou_matrix

    by_box = {}
    for x in issues:
        if x.kind != "missing":
            by_box[(x.field, x.box)] = x
    missing = [x for x in issues if x.kind == "missing"]
    matched_issues = set()
    found = {"deleted": 0, "flipped": 0, "spurious": 0}
    corrected = 0
    for f, box in log["deleted"]:
        for x in missing:
            if x.field == f and iou_matrix(np.array([box]), np.array([x.box]))[0, 0] >= 0.5:
                found["deleted"] += 1
                matched_issues.add(id(x))
                break
    for f, j, original in log["flipped"]:
        x = by_box.get((f, tuple(map(float, damaged[f][0][j]))))
        if x is not None and x.kind == "class":
            found["flipped"] += 1
            corrected += x.suggested == original
            matched_issues.add(id(x))
    for f, j in log["spurious"]:
        x = by_box.get((f, tuple(map(float, damaged[f][0][j]))))
        if x is not None:
            found["spurious"] += 1
            matched_issues.add(id(x))
    injected = sum(len(v) for v in log.values())
    hits = sum(found.values())
    precision = len(matched_issues) / len(issues) if issues else 0.0
    recall = hits / injected
    return {"issues": len(issues), "injected": injected,
            **{f"recall_{k}": found[k] / max(1, len(log[k])) for k in found},
            "corrected_share": corrected / max(1, found["flipped"]), "recall": recall,
            "precision": precision,
            "f1": 2 * precision * recall / (precision + recall) if hits else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", default="audit_boxes")
    args = ap.parse_args()

    import torch

    from hemascope.data import load_dataset
    from hemascope.detect.audit import KINDS, detector_thresholds, find_box_issues
    from hemascope.detect.predict import load_detector, predict_ensemble
    from hemascope.evaluate.detector import load_fields

    torch.set_num_threads(2)
    start = time.time()
    det = load_detector("default")
    ds = load_dataset(shared_data() / "cbc")
    n_classes = len(det.classes)
    fields, preds = {}, {}
    for split in ("val", "test"):
        fields[split] = load_fields(ds, det.classes, split=split).fields
        t = time.time()
        preds[split] = [predict_ensemble([det], f.image, views=VIEWS) for f in fields[split]]
        print(f"{split}: {time.time() - t:.0f} s", flush=True)
    counting = detector_thresholds(det.config, det.classes, "count")

    def audit(split, truths, variant):
        source, absent = VARIANTS[variant]
        return find_box_issues(preds[split], truths, n_classes, absent=absent,
                               thresholds=counting if source == "count" else None)

    def own(split):
        return [(np.asarray(f.boxes, float), np.asarray(f.labels, np.int64)) for f in fields[split]]

    def run(split: str, variant: str, seed: int) -> dict:
        fs = fields[split]
        damaged, log = inject(own(split), [f.image.shape[:2] for f in fs], n_classes, seed)
        issues, _ = audit(split, damaged, variant)
        return {"split": split, "variant": variant, "seed": seed, **score(issues, damaged, log)}

    clean = {}
    for split in ("val", "test"):
        for variant in VARIANTS:
            issues, thresholds = audit(split, own(split), variant)
            clean[split, variant] = {
                "boxes": int(sum(len(f.boxes) for f in fields[split])), "issues": len(issues),
                "thresholds": {c: round(float(thresholds[k + 1]), 3)
                               for k, c in enumerate(det.classes)},
                "by_kind": {kind: {c: sum(1 for x in issues if x.kind == kind and
                                          (x.suggested if kind == "missing" else x.label) == k + 1)
                                   for k, c in enumerate(det.classes)} for kind in KINDS}}

    dev = [run("val", v, s) for v in VARIANTS for s in DEV_SEEDS]
    dev_f1 = {v: float(np.mean([d["f1"] for d in dev if d["variant"] == v])) for v in VARIANTS}
    best = max(dev_f1.values())
    tied = [v for v in VARIANTS if dev_f1[v] >= best - TIE]
    chosen = min(tied, key=lambda v: clean["val", v]["issues"])
    print(f"dev F1 {dev_f1}; chosen {chosen}", flush=True)
    report = [run("test", v, s) for v in VARIANTS for s in REPORT_SEEDS]

    def ms(rows, key):
        a = np.array([r[key] for r in rows], float)
        return f"{a.mean():.3f} +- {a.std():.3f}"

    lines = ["# Box audit: annotation errors injected into CBC (5 % of boxes each deleted, "
             "class-flipped, and added at random; 1 view)", "",
             f"Dev (val, seeds {DEV_SEEDS[0]}-{DEV_SEEDS[-1]}) mean F1, and issues on val's own "
             "annotations:", "", "| variant | dev F1 | issues on val's own boxes |", "|---|---|---|"]
    for v in VARIANTS:
        lines.append(f"| {v} | {dev_f1[v]:.3f} | {clean['val', v]['issues']} of "
                     f"{clean['val', v]['boxes']} |")
    lines += ["", f"**Chosen: {chosen}** (ties within {TIE} go to the fewest issues on val's own "
              "boxes).", "", f"Test, seeds {REPORT_SEEDS[0]}-{REPORT_SEEDS[-1]}, mean +- std:", "",
              "| variant | issues | deleted found | class flips found (suggested = original) "
              "| spurious found | all found (recall) | issues that are injected (precision) | F1 |",
              "|---|---|---|---|---|---|---|---|"]
    for v in VARIANTS:
        rs = [r for r in report if r["variant"] == v]
        lines.append(f"| {v} | {np.mean([r['issues'] for r in rs]):.1f} of "
                     f"{rs[0]['injected']} injected | {ms(rs, 'recall_deleted')} | "
                     f"{ms(rs, 'recall_flipped')} ({ms(rs, 'corrected_share')}) | "
                     f"{ms(rs, 'recall_spurious')} | {ms(rs, 'recall')} | {ms(rs, 'precision')} | "
                     f"{ms(rs, 'f1')} |")
    lines += ["", "Issues on each split's own annotations (nothing injected): a detector's "
              "disagreements, not measured errors:", ""]
    for (split, v), c in clean.items():
        kinds = "; ".join(f"{kind} " + ", ".join(f"{cls} {n}" for cls, n in c["by_kind"][kind].items())
                          for kind in KINDS)
        lines.append(f"- {split}, {v}: {c['issues']} of {c['boxes']} boxes ({kinds}; thresholds "
                     + ", ".join(f"{k} {t}" for k, t in c["thresholds"].items()) + ")")
    minutes = (time.time() - start) / 60
    lines += ["", f"Command: `python benchmarks/audit_boxes.py`; {minutes:.1f} min on "
              f"{machine()['threads']} CPU threads."]
    write_results(args.name, {"machine": machine(), "minutes": minutes, "rate": RATE,
                              "views": VIEWS, "variants": VARIANTS, "dev": dev,
                              "dev_mean_f1": dev_f1, "chosen": chosen, "report": report,
                              "own_annotations": {f"{a} / {b}": c for (a, b), c in clean.items()}},
                   "\n".join(lines))


if __name__ == "__main__":
    main()
