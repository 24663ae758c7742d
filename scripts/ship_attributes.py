"""Copy a trained attribute-model run into the package as the shipped default, with its card.

    python scripts/ship_attributes.py runs/wbcatt_resnet18 [--name wbcatt_resnet18]

Copies config.json, model.safetensors and split.json to src/hemascope/weights/NAME/ and
writes MODEL_CARD.md from the recorded config, history and (if present)
benchmarks/results/attributes_wbcatt.json. Nothing in the card is typed by hand; run it
again after the benchmark (`--card-only`) to put the per-attribute table in.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from _ship import REPO, WEIGHTS, benchmark, copy_run, history

SHARED = REPO.parent / "shared" / "data"


def card(cfg: dict, history: list[dict], bench: dict | None) -> str:
    t = cfg["training"]
    tc = t["config"]
    test = cfg["metrics"]["test"] or {}
    scores = ""
    if bench:
        rep = bench["test"]
        rows = "\n".join(f"| {a} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} |"
                         for a, r in rep["attributes"].items())
        noise = bench["label_noise"]
        scores = (f"\n| attribute | accuracy | macro-F1 |\n|---|---|---|\n{rows}\n"
                  f"| **average** | {rep['average_accuracy']:.4f} | {rep['average_macro_f1']:.4f} |\n\n"
                  f"Label noise ({noise['n_images']} re-annotated test cells"
                  + (f"; annotators also on all {noise['n_images_all']} re-annotated cells"
                     if noise.get("n_images_all") else "") + "): see "
                  "`benchmarks/results/attributes_wbcatt.md` for annotator-vs-annotator and "
                  f"model agreement per attribute. Inference: {bench['cells_per_s']:.0f} cells/s "
                  f"on {bench['machine']['threads']} CPU threads (decoding included).\n")
        cb = bench.get("concept_bottleneck")
        if cb:
            scores += (f"\nConcept bottleneck on this model (`hemascope train concepts`): test "
                       f"macro-F1 {cb['full_test']['macro_f1']:.4f} for the cell type from the "
                       "attributes alone; against the shipped direct classifier, see the "
                       "concept bottleneck's card (`weights/wbcatt_concepts/MODEL_CARD.md`).\n")
    curve = ", ".join(f"{h['val_average_macro_f1']:.3f}" for h in history)
    stopped = (f"; the {tc.get('max_minutes', 0):g}-minute time limit stopped it after epoch "
               f"{len(history)}" if 0 < len(history) < tc["epochs"] else "")
    note = f"\n\n**How this run was made**: {t['note']}" if t.get("note") else ""
    init = tc.get("init")
    start = (("started from the shipped PBC cell-type classifier's encoder, `--init default`: "
              "our own in-domain pre-training on PBC images and their cell types; no external "
              "weights") if init == "default" else
             f"started from the encoder of `{init}`; no external weights" if init else
             "random initialisation, no external weights")
    start_short = ("no external pre-training (in-domain start from "
                   + ("our PBC classifier)" if init == "default" else f"`{init}`)")
                   if init else "random initialisation")
    return f"""# Model card: {cfg['arch']} WBCAtt morphology-attribute model (shipped default)

**Task**: read the 11 WBCAtt morphology attributes (Tsutsui et al., NeurIPS 2023) of a
single white-cell image: {', '.join(cfg['attributes'])}.

**Architecture**: {cfg['arch']} encoder ({start}), dropout
{cfg['dropout']}, one linear head per attribute over its exact value set. Input:
{cfg['image_size']}x{cfg['image_size']} RGB, letterboxed (bicubic), normalised with the training
set's channel mean {[round(m, 4) for m in cfg['mean']]} and std {[round(s, 4) for s in cfg['std']]}.
Weights stored as {cfg.get('weights_dtype', 'float32')} safetensors.

**Data**: WBCAtt attribute tables over PBC images (Acevedo et al. 2020; CC BY 4.0).
**Split**: the tables' official one: {', '.join(f'{k} {v:,}' for k, v in t['n_images'].items())}
cells. The best epoch ({t['best_epoch']} of {tc['epochs']}{stopped}) was chosen on val average
macro-F1; test was used only for the scores below.{note}

**Training**: `{t['command']}` - {tc['optimizer']} lr {tc['lr']} ({tc['schedule']},
{tc['warmup_epochs']} warm-up epoch), weight decay {tc['weight_decay']}, batch {tc['batch_size']},
label smoothing {tc['label_smoothing']}, EMA {tc['ema_decay']}, mean cross-entropy over the
heads; augmentation {json.dumps(tc['augment'])}. Wall time {t['wall_time_s'] / 60:.0f} min on
{t['device']}.

## Test scores (official test split, {test.get('n_images', '?')} cells)

Average macro-F1 **{test.get('average_macro_f1', float('nan')):.4f}**, average accuracy
{test.get('average_accuracy', float('nan')):.4f}. Reproduce:
`hemascope evaluate attributes --model default` (or `python benchmarks/attributes_wbcatt.py --model default`).
{scores}
## Limits

Below the WBCAtt target of 0.93 (published: 0.916 for ConvNeXt-T, ImageNet-pretrained, 224 px):
{start_short}, {cfg['image_size']} px inputs, {len(history)} epochs. One lab's images (PBC: one scanner,
one stain), so colour attributes (cytoplasm and granule colour) are the first to drift on
other labs' cells; granule and vacuole attributes are small structures that lose detail at
this input size. The annotations themselves disagree between annotators on some
attributes (see the label-noise table), which caps any model's agreement.
Validation average macro-F1 by epoch: {curve}.
"""


def concepts_card(c: dict, bench: dict | None) -> str:
    test, gb = c["metrics"]["test"], c["metrics"].get("test_gradient_boosting")
    paired = ""
    if bench and bench.get("concept_bottleneck"):
        p = bench["concept_bottleneck"]["paired"]
        paired = (f"\nAgainst the direct image classifier ({p['classifier']}) on the {p['n_images']} WBCAtt "
                  "test cells that are also in that classifier's own test split (neither model "
                  f"trained on them): macro-F1 {p['bottleneck']['macro_f1']:.4f} (bottleneck) vs "
                  f"{p['direct']['macro_f1']:.4f} (direct), a gap of {p['gap_macro_f1']:+.4f}.\n")
    boosted = (f"Gradient-boosted trees on the same concepts (scored for comparison, not shipped): "
               f"accuracy {gb['accuracy']:.4f}, macro-F1 {gb['macro_f1']:.4f}.\n" if gb else "")
    return f"""# Model card: concept-bottleneck cell typer (shipped default)

**Task**: the cell type ({', '.join(c['classes'])}) from the shipped attribute model's
predicted attribute-value probabilities alone (sequential concept bottleneck, Koh et al.
2020), explainable per cell and open to interventions (`hemascope explain concepts
--set ATTRIBUTE=VALUE`).

**Model**: multinomial logistic regression over {len(c['concepts'])} concepts
(attribute=value), L1 penalty {c['l1']} fitted by proximal gradient: {c['sparsity']:.0%} of
the weights are exactly zero. Stored as JSON (`concepts.json`), nothing pickled; it names the
attribute model it reads (`{c['attributes_model']}`) and that model's weight hash.

**Data**: fitted on the WBCAtt train split ({c['n_train']:,} cells), scored on the official
test split. Command: `hemascope train concepts --attributes default --data ../shared/data/wbcatt --out DIR`.

## Test scores ({test['n_images']} cells)

Accuracy **{test['accuracy']:.4f}**, macro-F1 **{test['macro_f1']:.4f}**.
{boosted}{paired}
## Limits

Only as good as the attributes it reads: on other labs' cells, attribute errors (colour
attributes first) pass straight into the type. The five WBCAtt types only.
"""


def record_provenance(cfg: dict, dest: Path, test_json: Path | None, note: str) -> dict:
    """Put the test scores measured here and the official split into a shipped config."""
    from hemascope.data.splits import save_split
    from hemascope.data.tables import read_wbcatt_folder
    from hemascope.io.atomic import write_json
    from hemascope.train.attributes import split_of
    from hemascope.train.config import AttributeTrainConfig

    if test_json:
        rep = json.loads(test_json.read_text())
        cfg["metrics"]["test"] = {k: v for k, v in rep.items() if k != "attributes"}
        ds = read_wbcatt_folder(SHARED / "wbcatt", image_root=SHARED / "pbc")
        split = split_of(ds, AttributeTrainConfig())
        split = dataclasses.replace(split, dataset="../shared/data/pbc")
        save_split(dest / "split.json", split)
        cfg["training"]["n_images"] = split.counts()
    if note:
        cfg["training"]["note"] = note
    write_json(dest / "config.json", cfg, indent=2)
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--name", default="wbcatt_resnet18")
    ap.add_argument("--concepts-name", default="wbcatt_concepts",
                    help="shipped concept bottleneck (weights/NAME/concepts.json) to write a card for")
    ap.add_argument("--card-only", action="store_true",
                    help="only rewrite MODEL_CARD.md from the shipped config and the benchmark")
    ap.add_argument("--test-json", type=Path, default=None,
                    help="`hemascope evaluate attributes --json` scores of the run on the original "
                         "test images, for a run trained on packed copies (scripts/pack_wbcatt.py) "
                         "that carried no test split; the official split file is written too")
    ap.add_argument("--note", default="", help="how the run was made, recorded in config and card")
    args = ap.parse_args()
    dest = WEIGHTS / args.name if args.card_only else copy_run(args.run, args.name)
    cfg = json.loads((dest / "config.json").read_text())
    if args.test_json or args.note:
        cfg = record_provenance(cfg, dest, args.test_json, args.note)
    bench = benchmark("attributes_wbcatt")
    (dest / "MODEL_CARD.md").write_text(card(cfg, history(args.run), bench))
    concepts = WEIGHTS / args.concepts_name / "concepts.json"
    if concepts.is_file():
        (concepts.parent / "MODEL_CARD.md").write_text(
            concepts_card(json.loads(concepts.read_text()), bench))
        print(f"wrote the card of {concepts.parent}")
    print(f"{'rewrote card of' if args.card_only else 'shipped'} {dest}")


if __name__ == "__main__":
    main()
