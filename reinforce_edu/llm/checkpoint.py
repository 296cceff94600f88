"""Nothing lost on interruption: a run's log, its checkpoint written atomically, an exact resume.

A checkpoint holds the trainable parameters (the frozen ones are those of `config.model`), the optimiser(s),
fp16's loss scale, the baseline's state, the RNG states and the step; resuming trims the log to that step,
so an interrupted run ends exactly as an uninterrupted one (same seed, same device; tests/test_resume.py).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict
from pathlib import Path

import torch

from reinforce_edu.llm.config import CHECKPOINT, LOG


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_log(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl (a run folder or the file itself), one dict per step."""
    path = Path(path)
    path = path / LOG if path.is_dir() else path
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def trim_log(path: Path, step: int) -> list[dict]:
    """Drop the records written after `step` (or a torn last line) from the log at `path`; return the kept ones."""
    if not path.is_file():
        return []
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("step", 0) <= step:
            kept.append(rec)
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


def trainer_state(trainer) -> dict:
    """Everything a resumed run needs to continue exactly."""
    named = dict(trainer.policy.named_parameters())
    return {
        "step": trainer.step, "n_skipped": trainer.n_skipped, "config": asdict(trainer.config),
        "trainable": {n: named[n].detach().cpu().clone() for n in trainer.trainable},
        "optimizer": trainer.optimizer.state_dict(), "baseline": trainer.baseline.state_dict(),
        "critic": None if trainer.critic is None else {n: p.detach().cpu().clone()
                                                    for n, p in trainer.critic.named_parameters() if p.requires_grad},
        "critic_optimizer": None if trainer.critic is None else trainer.critic_optimizer.state_dict(),
        "scaler": None if trainer.scaler is None else trainer.scaler.state_dict(),
        "rng": {"python": random.getstate(), "torch": torch.random.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }


def save_checkpoint(trainer, path: str | Path | None = None) -> Path:
    """torch.save to a temporary file in the same folder, then os.replace: never half-written.

    Holds the trainable parameters only (the frozen ones are those of `config.model`).
    """
    path = Path(path) if path is not None else trainer.out / CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(trainer_state(trainer), tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(trainer, path: str | Path) -> None:
    """Restore weights, optimiser, baseline, RNG states and step; trim the log to that step."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    saved = state["config"]
    ignore = {"steps", "checkpoint_every", "resume", "progress", "output_dir", "device", "keep_freed_memory"}
    diff = sorted(k for k in saved if k not in ignore and saved[k] != getattr(trainer.config, k, None))
    if diff:
        raise ValueError(f"cannot resume {path}: config differs from the checkpoint's in {diff}")
    named = dict(trainer.policy.named_parameters())
    if set(state["trainable"]) != set(trainer.trainable):
        raise ValueError(f"cannot resume {path}: it holds other trainable parameters than this config")
    with torch.no_grad():
        for n, t in state["trainable"].items():
            named[n].copy_(t)
    trainer.optimizer.load_state_dict(state["optimizer"])
    if trainer.critic is not None and state.get("critic") is not None:
        critic = dict(trainer.critic.named_parameters())
        with torch.no_grad():
            for n, t in state["critic"].items():
                critic[n].copy_(t)
        trainer.critic_optimizer.load_state_dict(state["critic_optimizer"])
    trainer.baseline.load_state_dict(state["baseline"])
    if trainer.scaler is not None and state.get("scaler") is not None:
        trainer.scaler.load_state_dict(state["scaler"])
    random.setstate(state["rng"]["python"])
    torch.random.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    trainer.step, trainer.n_skipped = int(state["step"]), int(state["n_skipped"])
    if trainer.dist.is_main:  # in N processes (llm.distributed) the main one owns the log
        trainer.history = trim_log(trainer.out / LOG, trainer.step)
    trainer._append = (trainer.out / LOG).is_file()
