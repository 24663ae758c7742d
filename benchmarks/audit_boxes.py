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

**Decision rule, fixed before the first run.** The CLI default for ``--tta`` in this mode is
1 or 4 views, whichever has the higher mean F1 over the dev runs (val, seeds 100-104);
within 0.01 of each other, 1 view (4 times cheaper). The tables report test, seeds 0-9.

    python benchmarks/audit_boxes.py        # ~3 min on 2 CPU threads
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import machine, shared_data, write_results

RATE = 0.05
VIEWS = (1, 4)
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
    from hemascope.detect.audit import KINDS, find_box_issues
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
        for v in VIEWS:
            t = time.time()
            preds[split, v] = [predict_ensemble([det], f.image, views=v) for f in fields[split]]
            print(f"{split}: {v} view(s) in {time.time() - t:.0f} s", flush=True)

    def run(split: str, v: int, seed: int) -> dict:
        fs = fields[split]
        truths = [(np.asarray(f.boxes, float), np.asarray(f.labels, np.int64)) for f in fs]
        damaged, log = inject(truths, [f.image.shape[:2] for f in fs], n_classes, seed)
        issues, _ = find_box_issues(preds[split, v], damaged, n_classes)
        return {"split": split, "views": v, "seed": seed, **score(issues, damaged, log)}

    dev = [run("val", v, s) for v in VIEWS for s in DEV_SEEDS]
    dev_f1 = {v: float(np.mean([d["f1"] for d in dev if d["views"] == v])) for v in VIEWS}
    best = max(dev_f1.values())
    chosen = next(v for v in VIEWS if dev_f1[v] >= best - TIE)
    print(f"dev F1 {dev_f1}; chosen {chosen} view(s)", flush=True)
    report = [run("test", v, s) for v in VIEWS for s in REPORT_SEEDS]

    clean = {}
    for v in VIEWS:
        truths = [(np.asarray(f.boxes, float), np.asarray(f.labels, np.int64))
                  for f in fields["test"]]
        issues, thresholds = find_box_issues(preds["test", v], truths, n_classes)
        clean[v] = {"boxes": int(sum(len(b) for b, _ in truths)),
                    "thresholds": {c: round(float(thresholds[k + 1]), 3)
                                   for k, c in enumerate(det.classes)},
                    "issues": {kind: {c: sum(1 for x in issues if x.kind == kind and
                                             (x.suggested if kind == "missing" else x.label) == k + 1)
                                      for k, c in enumerate(det.classes)} for kind in KINDS}}

    def ms(rows, key):
        a = np.array([r[key] for r in rows], float)
        return f"{a.mean():.3f} +- {a.std():.3f}"

    lines = ["# Box audit: annotation errors injected into CBC (5 % of boxes each deleted, "
             "class-flipped, and added at random)", "",
             f"Dev (val, seeds {DEV_SEEDS[0]}-{DEV_SEEDS[-1]}) mean F1: "
             + ", ".join(f"{v} view(s) {f:.3f}" for v, f in dev_f1.items())
             + f"; **chosen: {chosen} view(s)** (ties within {TIE} go to 1 view).", "",
             f"Test, seeds {REPORT_SEEDS[0]}-{REPORT_SEEDS[-1]}, mean +- std:", "",
             "| views | issues | deleted found | class flips found (suggested = original) "
             "| spurious found | all found (recall) | issues that are injected (precision) | F1 |",
             "|---|---|---|---|---|---|---|---|"]
    for v in VIEWS:
        rs = [r for r in report if r["views"] == v]
        lines.append(f"| {v} | {np.mean([r['issues'] for r in rs]):.1f} of "
                     f"{rs[0]['injected']} injected | {ms(rs, 'recall_deleted')} | "
                     f"{ms(rs, 'recall_flipped')} ({ms(rs, 'corrected_share')}) | "
                     f"{ms(rs, 'recall_spurious')} | {ms(rs, 'recall')} | {ms(rs, 'precision')} | "
                     f"{ms(rs, 'f1')} |")
    lines += ["", "Issues on the test split's own annotations (nothing injected): a detector's "
              "disagreements, not measured errors:", ""]
    for v in VIEWS:
        c = clean[v]
        kinds = "; ".join(f"{kind} " + ", ".join(f"{cls} {n}" for cls, n in c["issues"][kind].items())
                          for kind in KINDS)
        lines.append(f"- {v} view(s), of {c['boxes']} boxes: {kinds} (thresholds "
                     + ", ".join(f"{k} {t}" for k, t in c["thresholds"].items()) + ")")
    minutes = (time.time() - start) / 60
    lines += ["", f"Command: `python benchmarks/audit_boxes.py`; {minutes:.1f} min on "
              f"{machine()['threads']} CPU threads."]
    write_results(args.name, {"machine": machine(), "minutes": minutes, "rate": RATE,
                              "dev": dev, "dev_mean_f1": dev_f1, "chosen_views": chosen,
                              "report": report, "clean_test": clean}, "\n".join(lines))


if __name__ == "__main__":
    main()
