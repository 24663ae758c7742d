"""What each shipped model costs (the smear study's model cost table): parameters, file
size, peak memory and speed of inference, and the CPU time of one training epoch.

    python benchmarks/model_costs.py [--threads 2]

Per model, in a fresh process each (so peak memory is that model's alone):
- inference through the function the CLI uses, on real images (64 PBC test cells for the
  classifier and the attribute model, 20 CBC test fields for the detector, 32 CellaVision
  cells for the part U-Net), after one warm-up call; decoding excluded;
- peak resident memory of that process minus a process that loaded the same images and
  imported torch and hemascope but no model;
- one training step (forward, backward, optimiser) at the shipped recipe's batch and input
  size on random tensors, timed over 3 steps after a warm-up, times the steps of one epoch
  of the shipped training set: an estimate of a CPU epoch (data loading not counted);
- the wall time the shipped training run recorded, with its device.

Writes results/model_costs.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from _common import machine, pbc_test_sample, shared_data, write_results

MODELS = ("classifier", "detector", "attributes", "parts")
NAMES = {"classifier": "pbc8_resnet18", "detector": "smear3_fcos", "attributes": "wbcatt_resnet18",
         "parts": "cellparts_unet"}


def _images(kind: str):
    from hemascope.io.image import read_image

    if kind in ("classifier", "attributes", "baseline"):
        return [read_image(p) for p, _ in pbc_test_sample(64, seed=0)]
    if kind == "detector":
        files = sorted((shared_data() / "cbc" / "Testing" / "Images").glob("*.jpg"))[:20]
        return [read_image(f) for f in files]
    return [read_image(f) for f in sorted((shared_data() / "cellavision").glob("*.bmp"))[:32]]


def _timed(fn, repeats: int = 2) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _train_step_seconds(kind: str, loaded) -> tuple[float, int, int]:
    """Seconds of one training step, its batch size and the steps of one epoch."""
    import torch

    cfg = loaded.config
    tcfg = cfg["training"].get("config", {})
    batch = int(tcfg.get("batch_size", 8))
    n_train = cfg["training"]["n_images"]
    n_train = n_train["train"] if isinstance(n_train, dict) else int(n_train)
    model = loaded.model
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    if kind == "detector":
        side = int(max(tcfg.get("min_sizes") or [cfg["test_size"]]))
        images = [torch.rand(3, side, round(side * 4 / 3), generator=g) for _ in range(batch)]
        boxes = torch.tensor([[40.0 + 20 * i, 30.0 + 10 * i, 90.0 + 20 * i, 80.0 + 10 * i]
                              for i in range(12)])
        targets = [{"boxes": boxes.clone(), "labels": torch.randint(1, len(cfg["classes"]) + 1, (12,),
                                                                      generator=g)} for _ in images]

        def step():
            loss = sum(model(images, targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
    else:
        size = int(cfg["image_size"])
        x = torch.rand(batch, 3, size, size, generator=g).contiguous(memory_format=torch.channels_last)

        def step():
            out = model(x)
            if kind == "parts":
                y = torch.randint(0, out.shape[1], (batch, *out.shape[2:]), generator=g)
            else:
                y = torch.randint(0, out.shape[1], (batch,), generator=g)
            loss = torch.nn.functional.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    step()
    t = time.perf_counter()
    for _ in range(3):
        step()
    per_step = (time.perf_counter() - t) / 3
    model.eval()
    return per_step, batch, -(-n_train // batch)


def _one(kind: str, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    images = _images(kind)
    if kind == "baseline":
        import hemascope.pipeline  # noqa: F401  (the same imports as a model run)

        return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if kind == "classifier":
        from hemascope.classify import predict_arrays
        from hemascope.models.artifact import load_classifier

        loaded = load_classifier("default")
        seconds = _timed(lambda: predict_arrays(loaded, images, batch_size=64))
    elif kind == "attributes":
        from hemascope.attributes import load_attribute_model, predict_attributes

        loaded = load_attribute_model("default")
        seconds = _timed(lambda: predict_attributes(loaded, images, batch_size=64))
    elif kind == "detector":
        from hemascope.detect.predict import detect_field, load_detector

        loaded = load_detector("default")
        seconds = _timed(lambda: [detect_field(loaded, im) for im in images])
    else:
        from hemascope.segment.predict import load_segmenter, segment_arrays

        loaded = load_segmenter("default")
        seconds = _timed(lambda: segment_arrays(loaded, images))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    params = sum(p.numel() for p in loaded.model.parameters())
    step, batch, steps = _train_step_seconds(kind, loaded)
    t = loaded.config.get("training", {})
    return {"model": NAMES[kind], "parameters": params,
            "file_mb": (loaded.path / "model.safetensors").stat().st_size / 1e6,
            "weights_dtype": loaded.config.get("weights_dtype", "float32"),
            "images": len(images), "per_s": len(images) / seconds, "peak_rss_mb": peak,
            "train_step_s": step, "train_batch": batch, "steps_per_epoch": steps,
            "cpu_epoch_s_estimate": step * steps, "recorded_wall_s": t.get("wall_time_s"),
            "recorded_device": t.get("device")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(_one(args.one, args.threads)))
        return
    here = Path(__file__).resolve().parent

    def run(kind: str) -> dict:
        out = subprocess.run([sys.executable, str(here / "model_costs.py"), "--one", kind,
                              "--threads", str(args.threads)], capture_output=True, text=True,
                             cwd=here, check=False)
        if out.returncode != 0:
            sys.exit(f"{kind} failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    base = run("baseline")["peak_rss_mb"]
    rows = {}
    for kind in MODELS:
        r = run(kind)
        r["memory_mb"] = r["peak_rss_mb"] - base
        rows[kind] = r
        print(f"{kind}: {r['per_s']:.1f}/s, {r['memory_mb']:.0f} MB", flush=True)
    unit = {"classifier": "cells", "attributes": "cells", "detector": "fields (640x480)",
            "parts": "cells"}
    lines = [f"## Model costs: the shipped models on {args.threads} CPU threads", "",
             "| model | parameters | file (MB) | inference | peak memory (MB, over the "
             "process without a model) | training step (s, batch) | CPU epoch, estimate | "
             "shipped training, recorded |", "|---|---|---|---|---|---|---|---|"]
    for kind, r in rows.items():
        rec = (f"{r['recorded_wall_s'] / 60:.0f} min, {r['recorded_device']}"
               if r["recorded_wall_s"] else "-")
        lines.append(f"| {r['model']} ({kind}) | {r['parameters'] / 1e6:.1f} M | {r['file_mb']:.1f} "
                     f"({r['weights_dtype']}) | {r['per_s']:.1f} {unit[kind]}/s | "
                     f"{r['memory_mb']:.0f} | {r['train_step_s']:.2f} ({r['train_batch']}) | "
                     f"{r['cpu_epoch_s_estimate'] / 60:.1f} min ({r['steps_per_epoch']} steps) | {rec} |")
    lines += ["", "Inference: the CLI's functions on real images, decoding excluded, fastest of 2 "
              "passes after a warm-up. Memory: peak resident set of a process that loads the "
              f"model and runs it, minus {base:.0f} MB for one that loads the same images with "
              "torch and hemascope imported. CPU epoch: one timed training step on random "
              "tensors (recipe's batch and input size; data loading not counted) times the steps "
              "of one epoch of the shipped training set. Recorded: the wall time of the shipped "
              "model's last training run (the classifier had three earlier stages; see its card).",
              "", f"Command: `python benchmarks/model_costs.py --threads {args.threads}`."]
    write_results("model_costs", {"threads": args.threads, "baseline_rss_mb": base,
                                  "models": rows, "machine": machine()}, "\n".join(lines))


if __name__ == "__main__":
    main()
