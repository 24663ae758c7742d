"""The cross-lab ablation: six conditions x seeds, paired Wilcoxon tests against the full workflow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from hemascope.adapt.fewshot import FewShotConfig, TargetData, conditions, run_fewshot
from hemascope.adapt.stats import wilcoxon_signed_rank
from hemascope.models.artifact import LoadedModel

REFERENCE = "full workflow"


@dataclass
class AblationRow:
    condition: str
    accuracy: list[float]
    macro_f1: list[float]
    p_accuracy: float | None  # vs the full workflow, paired by seed

    def to_dict(self) -> dict:
        return {"condition": self.condition, "accuracy": self.accuracy, "macro_f1": self.macro_f1,
                "accuracy_mean": float(np.mean(self.accuracy)), "accuracy_std": float(np.std(self.accuracy)),
                "macro_f1_mean": float(np.mean(self.macro_f1)), "macro_f1_std": float(np.std(self.macro_f1)),
                "wilcoxon_p_vs_full": self.p_accuracy}


def run_ablation(target: TargetData, base: LoadedModel, cfg: FewShotConfig, *, seeds: Sequence[int],
                 source: TargetData | None = None, out_dir: str | Path | None = None,
                 log: Callable[[str], None] = lambda s: None) -> list[AblationRow]:
    """Every condition for every seed (same shots per seed across conditions)."""
    conds = conditions(cfg)
    if source is None:
        conds.pop("mixed source+target")
        log("no --source given: the mixed source+target condition is skipped")
    results: dict[str, tuple[list[float], list[float]]] = {}
    for name, c in conds.items():
        accs, f1s = [], []
        for seed in seeds:
            run = None if out_dir is None else Path(out_dir) / name.replace(" ", "_").replace("+", "_") / f"seed{seed}"
            res = run_fewshot(target, base, _seeded(c, seed), run_dir=run, source=source, log=log)
            accs.append(res.report.accuracy)
            f1s.append(res.report.macro_f1)
        results[name] = (accs, f1s)
    full = results[REFERENCE][0]
    return [AblationRow(n, a, f, None if n == REFERENCE else wilcoxon_signed_rank(a, full))
            for n, (a, f) in results.items()]


def _seeded(cfg: FewShotConfig, seed: int) -> FewShotConfig:
    from dataclasses import replace

    return replace(cfg, seed=seed)


def ablation_markdown(rows: list[AblationRow], *, shots: int, seeds: Sequence[int]) -> str:
    lines = [f"| condition (K={shots}, {len(seeds)} seeds) | accuracy | macro-F1 | Wilcoxon p vs full |",
             "|---|---|---|---|"]
    for r in rows:
        d = r.to_dict()
        p = "-" if r.p_accuracy is None else f"{r.p_accuracy:.3f}"
        lines.append(f"| {r.condition} | {d['accuracy_mean']:.4f} +- {d['accuracy_std']:.4f} | "
                     f"{d['macro_f1_mean']:.4f} +- {d['macro_f1_std']:.4f} | {p} |")
    return "\n".join(lines)
