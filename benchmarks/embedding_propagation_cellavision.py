"""Which embedding spreads a few labels best over CellaVision's cells, with no adaptation?

    python benchmarks/embedding_propagation_cellavision.py [--seeds 20] [--name ...]

The idea behind ``hemascope fewshot --propagate-with``, measured on the *base* models with
no SHOT start and no fine-tuning: K shots drawn as ``fewshot`` draws them (stratified, one
seed each), label propagation (``hemascope.adapt.propagate``) over the kNN graph of

- the PBC classifier's embedding (4 views averaged),
- the shipped attribute model's embedding (4 views),
- its 11 attributes' value probabilities (the concept vector),
- the classifier's and the attribute model's embeddings side by side
  (``join_embeddings``), and the classifier's with the concept vector;

each alone (``propagation``) and averaged with the classifier's softmax, as ``fewshot``'s
transductive scores are (``with softmax``). Accuracy on the non-shot cells, mean over
seeds 0..N-1. This was the exploration that led to ``propagate_with_cellavision.py``; it
decides nothing. Writes ``results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from _common import machine, shared_data, write_results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1")
    ap.add_argument("--shots", type=int, nargs="+", default=[10, 25])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="embedding_propagation_cellavision")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hemascope.adapt.fewshot import join_embeddings, load_target
    from hemascope.adapt.propagate import label_propagation, transductive_probs
    from hemascope.adapt.shot import embed_all
    from hemascope.attributes import attribute_probabilities, load_attribute_model
    from hemascope.attributes.predict import attribute_embeddings
    from hemascope.data.splits import few_shot
    from hemascope.models.artifact import load_classifier

    base = load_classifier("default")
    target = load_target(shared_data() / "cellavision", base)
    mean, std = base.normalisation
    emb, logits = embed_all(base.model, target.images, mean, std, views=4)
    soft = torch.softmax(logits.float(), 1).numpy()[:, [base.classes.index(c) for c in target.classes]]
    soft /= soft.sum(1, keepdims=True)
    att = load_attribute_model("default")
    images = list(target.images)
    att_emb = attribute_embeddings(att, images, views=4)
    probs = attribute_probabilities(att, images, tta=4, adjusted=False)
    concepts = np.concatenate([probs[k] for k in att.model.attributes], 1)
    clf = emb.float().numpy()
    graphs = {"classifier": clf, "attribute model": att_emb, "concept vector": concepts,
              "classifier + attribute model": join_embeddings(clf, att_emb),
              "classifier + concept vector": join_embeddings(clf, concepts)}
    keys = [str(i) for i in range(len(target.labels))]
    names = [target.classes[i] for i in target.labels]
    out: dict = {}
    for k in args.shots:
        scores = {g: {"propagation": [], "with softmax": []} for g in graphs}
        for seed in range(args.seeds):
            shots = np.array([int(s) for s in few_shot(keys, names, shots=k, seed=seed)])
            rest = np.setdiff1d(np.arange(len(keys)), shots)
            y = target.labels[shots]
            for g, e in graphs.items():
                spread = label_propagation(e, shots, y, len(target.classes))
                both = transductive_probs(soft, e, shots, y)
                scores[g]["propagation"].append(float((spread[rest].argmax(1) == target.labels[rest]).mean()))
                scores[g]["with softmax"].append(float((both[rest].argmax(1) == target.labels[rest]).mean()))
        out[str(k)] = {g: {m: {"mean": float(np.mean(v)), "std": float(np.std(v))}
                           for m, v in s.items()} for g, s in scores.items()}
    zero_shot = float((soft.argmax(1) == target.labels).mean())
    rows = [f"| {g} | " + " | ".join(f"{out[str(k)][g][m]['mean']:.3f}" for k in args.shots
                                      for m in ("propagation", "with softmax")) + " |"
            for g in graphs]
    head = " | ".join(f"K = {k} {m}" for k in args.shots for m in ("propagation", "with softmax"))
    table = f"""## Label propagation over base-model embeddings, PBC -> CellaVision ({len(keys)} cells, seeds 0-{args.seeds - 1})

No adaptation (no SHOT start, no fine-tuning). Accuracy on the non-shot cells, mean over
seeds; "with softmax" averages the propagated scores with the classifier's softmax (as
`fewshot` does). The classifier alone, no labels: {zero_shot:.3f}.

| graph built from | {head} |
|---|{'---|' * (2 * len(args.shots))}
{chr(10).join(rows)}"""
    write_results(args.name, {"shots": args.shots, "seeds": args.seeds, "accuracy": out,
                              "zero_shot": zero_shot, "machine": machine()}, table)


if __name__ == "__main__":
    main()
