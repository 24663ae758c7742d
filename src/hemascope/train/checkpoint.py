"""Resumable training state shared by every trainer: one ``checkpoint.pt`` per run.

Only tensors and plain numbers are saved, and they are read back with
``torch.load(..., weights_only=True)``: a checkpoint can never run code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from hemascope.io.atomic import atomic_write


def save_checkpoint(path: str | Path, *, model: torch.nn.Module, opt, sched,
                    ema: torch.nn.Module | None = None, **state: Any) -> None:
    """Write model / EMA / optimiser / scheduler state plus ``state`` atomically."""
    full = {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), **state}
    if ema is not None:
        full["ema"] = ema.state_dict()
    with atomic_write(path, "wb") as fh:
        torch.save(full, fh)


def load_checkpoint(path: str | Path, *, model: torch.nn.Module, opt, sched,
                    ema: torch.nn.Module | None = None) -> dict[str, Any]:
    """Restore the modules in place; returns the remaining saved entries.

    Raises:
        HemascopeError: a checkpoint that is unreadable (truncated, not a checkpoint) or
            that belongs to another model or optimiser than the one being resumed.
    """
    from hemascope.errors import HemascopeError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # any device resumes
    except Exception as e:  # torch raises many kinds (unpickling, zip, EOF) for one problem
        raise HemascopeError(f"cannot resume from {path}: not a readable checkpoint "
                             f"({type(e).__name__}); start again without --resume") from None
    try:
        model.load_state_dict(state.pop("model"))
        if ema is not None:
            ema.load_state_dict(state.pop("ema"))
        opt.load_state_dict(state.pop("opt"))
        sched.load_state_dict(state.pop("sched"))
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise HemascopeError(f"cannot resume from {path}: it was written for another model or "
                             f"options ({first}); resume with the options of that run, or start "
                             "again without --resume") from None
    return state


def trim_history(path: str | Path, done_epochs: int) -> None:
    """Keep only the rows of ``history.jsonl`` for the first ``done_epochs`` epochs.

    A fresh run (``done_epochs`` 0) in a folder that held an earlier run starts an empty
    history instead of appending to the old one; a resumed run drops the rows of epochs its
    checkpoint did not keep.
    """
    path = Path(path)
    if not path.is_file():
        return
    rows = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    keep = []
    for line in rows:
        try:
            if int(json.loads(line)["epoch"]) <= done_epochs:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a row cut short by a crash
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write("".join(f"{line}\n" for line in keep))


@torch.no_grad()
def round_to_float16(model: torch.nn.Module) -> None:
    """Round every floating tensor through float16 in place, so the score is the one of
    the half-precision weights that will be shipped."""
    for t in model.state_dict().values():
        if t.is_floating_point():
            t.copy_(t.half().float())
