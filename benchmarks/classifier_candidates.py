"""Should a new classifier run replace the shipped default? Select on val, then report test.

    python benchmarks/classifier_candidates.py --runs RUN [RUN ...] [--soup] \
        [--data ../shared/data/pbc/PBC_dataset_normal_DIB] [--name classifier_candidates]

Every candidate (the shipped default, each run folder, and with ``--soup`` the uniform
average of the runs' weights, a "model soup" of fine-tunes from one start) is scored on
the val split recorded in the default model, on the original images. The candidate with
the best val accuracy, then val macro-F1, is selected; on a tie the shipped default stays
(no change without a measured gain). Only then is every candidate scored on test, so the
table shows what the selection rule bought and what it missed. Each run must hold
``config.json``, ``model.safetensors`` and the default's ``split.json`` (runs trained on a
packed copy by ``scripts/gpu_classifier.sh``: copy ``splits/pbc8_seed0.json`` in). The
runs' configs and per-epoch histories go into the JSON; their weights stay outside the
repository. Writes ``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from _common import machine, shared_data, write_results

from hemascope.models.artifact import default_model_dir


def average_weights(runs: list[Path], out: Path) -> Path:
    """A run folder whose float tensors are the mean of ``runs``' (same architecture)."""
    from safetensors.torch import load_file, save_file

    states = [load_file(str(r / "model.safetensors")) for r in runs]
    if any(s.keys() != states[0].keys() for s in states):
        raise SystemExit("--soup needs runs of one architecture (their tensors differ)")
    mean = {k: ((sum(s[k].float() for s in states) / len(states)).to(v.dtype)
                if v.is_floating_point() else v) for k, v in states[0].items()}
    out.mkdir(parents=True, exist_ok=True)
    save_file(mean, str(out / "model.safetensors"))
    cfg = json.loads((runs[0] / "config.json").read_text())
    cfg.pop("weights_sha256", None)  # not the first run's file any more
    (out / "config.json").write_text(json.dumps(cfg))
    shutil.copy2(runs[0] / "split.json", out / "split.json")
    return out


def score(model: Path, data: Path, split: str) -> dict:
    from hemascope.evaluate.classifier import evaluate_classifier

    rep = evaluate_classifier(data, model=model, split=split, n_bootstrap=0, tta=1).report
    return {"accuracy": rep.accuracy, "macro_f1": rep.macro_f1, "n_images": rep.n_images,
            "errors": round(rep.n_images * (1 - rep.accuracy))}


def describe(run: Path) -> dict:
    cfg = json.loads((run / "config.json").read_text())
    t = cfg.get("training", {})
    hist = run / "history.jsonl"
    rows = [json.loads(x) for x in hist.read_text().splitlines()] if hist.is_file() else []
    return {"command": t.get("command"), "best_epoch": t.get("best_epoch"),
            "epochs": t.get("config", {}).get("epochs"), "wall_time_s": t.get("wall_time_s"),
            "device": t.get("device"), "weights_sha256": cfg.get("weights_sha256"),
            "val_recorded": cfg.get("metrics", {}).get("val"),
            "history": [{k: r[k] for k in ("epoch", "val_accuracy", "val_macro_f1", "lr")
                         if k in r} for r in rows]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", nargs="+", type=Path, required=True)
    ap.add_argument("--soup", action="store_true", help="add the mean of the runs' weights")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--name", default="classifier_candidates")
    args = ap.parse_args()
    data = args.data or shared_data() / "pbc" / "PBC_dataset_normal_DIB"
    default = default_model_dir("classifier")
    split = (default / "split.json").read_bytes()
    for r in args.runs:
        missing = [f for f in ("config.json", "model.safetensors", "split.json") if not (r / f).is_file()]
        if missing:
            raise SystemExit(f"{r} lacks {missing}")
        if (r / "split.json").read_bytes() != split:
            raise SystemExit(f"{r}/split.json is not the shipped default's split")
    with tempfile.TemporaryDirectory() as tmp:
        cands = {"shipped default": default, **{r.name: r for r in args.runs}}
        if args.soup:
            cands["soup (mean of runs)"] = average_weights(list(args.runs), Path(tmp) / "soup")
        val = {}
        for name, path in cands.items():
            val[name] = score(path, data, "val")
            print(f"val  {name}: {val[name]['accuracy']:.4f} / {val[name]['macro_f1']:.4f}", flush=True)
        ranked = sorted(cands, key=lambda n: (val[n]["accuracy"], val[n]["macro_f1"],
                                              n == "shipped default"), reverse=True)
        selected = ranked[0]
        test = {}
        for name, path in cands.items():
            test[name] = score(path, data, "test")
            print(f"test {name}: {test[name]['accuracy']:.4f} / {test[name]['macro_f1']:.4f}", flush=True)
    lines = [f"# Classifier candidates ({data.name}; selected on val, then scored on test)", "",
             "| candidate | val accuracy | val macro-F1 | test accuracy | test macro-F1 | test errors |",
             "|---|---|---|---|---|---|"]
    for n in cands:
        mark = " **(selected)**" if n == selected else ""
        lines.append(f"| {n}{mark} | {val[n]['accuracy']:.4f} | {val[n]['macro_f1']:.4f} | "
                     f"{test[n]['accuracy']:.4f} | {test[n]['macro_f1']:.4f} | "
                     f"{test[n]['errors']} / {test[n]['n_images']} |")
    lines += ["", f"Selection rule: best val accuracy, then val macro-F1; a tie keeps the shipped "
              f"default. Selected: **{selected}**."]
    payload = {"data": str(data), "selected": selected, "val": val, "test": test,
               "runs": {r.name: describe(r) for r in args.runs}, "soup": args.soup,
               "machine": machine()}
    write_results(args.name, payload, "\n".join(lines))


if __name__ == "__main__":
    main()
