"""Nothing lost on interruption: a run's log, its checkpoint written atomically, an exact resume.

A checkpoint holds the trainable parameters (the frozen ones are those of `config.model`), the optimiser(s),
fp16's loss scale, the baseline's state, the RNG states and the step; resuming trims the log to that step,
so an interrupted run ends exactly as an uninterrupted one (same seed, same device; tests/test_resume.py).

On disk, in the run's folder (nothing in it is unpickled beyond tensors and plain data):

    checkpoint.json                the marker: format, version, which folder is the last complete one
    checkpoint-000012-<random>/
        policy.safetensors         the policy's trainable parameters
        critic.safetensors         PPO: the critic's trainable parameters
        state.json                 step, skipped-step count, the run's config
        state.pt                   optimiser(s), loss scaler, baseline, RNG states: torch.load(weights_only=True)

A save fills a fresh folder, then replaces the marker atomically (temp file + os.replace) and only then
deletes older folders: killed at any moment, the marker names a complete checkpoint. Checkpoints of
reinforce-edu 0.1.0 before this layout (a pickled checkpoint.pt) are refused with a clear error.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import tempfile
import zipfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from reinforce_edu import __version__
from reinforce_edu.llm.config import CHECKPOINT, LOG
from reinforce_edu.llm.sharding import full, full_optimizer_state, place, place_optimizer_state

FORMAT, VERSION = "reinforce-edu checkpoint", 2
"""The marker's `format` and `version`; a marker of another version is refused."""
OLD_CHECKPOINT = "checkpoint.pt"
"""Where reinforce-edu 0.1.0 wrote its pickled checkpoints (refused: they would be unpickled)."""
JSON_KEYS = ("step", "n_skipped", "config")
"""Fields of the state kept in state.json; the weights go to safetensors, everything else to state.pt."""


def _is_pickle(path: Path) -> bool:
    """A bare pickle (protocol >= 2), or torch.save's zip file holding one (read, never unpickled)."""
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"\x80"):
        return True
    try:
        with zipfile.ZipFile(path) as z:
            return any(name.endswith("data.pkl") for name in z.namelist())
    except zipfile.BadZipFile:
        return False


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
    named = dict(trainer.policy.named_parameters())  # sharded (llm.sharding): `full` gathers, in every process
    return {
        "step": trainer.step, "n_skipped": trainer.n_skipped, "config": asdict(trainer.config),
        "trainable": {n: full(named[n].detach()).cpu().clone() for n in trainer.trainable},
        "optimizer": full_optimizer_state(trainer.optimizer.state_dict()), "baseline": trainer.baseline.state_dict(),
        "critic": None if trainer.critic is None else {n: p.detach().cpu().clone()
                                                    for n, p in trainer.critic.named_parameters() if p.requires_grad},
        "critic_optimizer": None if trainer.critic is None else trainer.critic_optimizer.state_dict(),
        "scaler": None if trainer.scaler is None else trainer.scaler.state_dict(),
        "rng": {"python": random.getstate(), "torch": torch.random.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }


def _refuse_old_or_foreign(path: Path, what: str) -> ValueError:
    """The error for a file at `path` that is not a marker of this format (never unpickled to find out)."""
    if _is_pickle(path):
        return ValueError(f"{path} is a pickled checkpoint ({OLD_CHECKPOINT}, written by reinforce-edu 0.1.0 before "
                          f"the safetensors layout); it is not loaded, since unpickling can run any code. Restart "
                          f"the run (a new --output-dir, or without --resume), or resume it with the version that "
                          f"wrote it")
    return ValueError(f"{path} is not a reinforce-edu checkpoint: expected {what}")


def find_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint marker of the run in `run_dir`, None if it has none; an old pickled one is an error."""
    run_dir = Path(run_dir)
    if (run_dir / CHECKPOINT).is_file():
        return run_dir / CHECKPOINT
    if (run_dir / OLD_CHECKPOINT).is_file():
        raise _refuse_old_or_foreign(run_dir / OLD_CHECKPOINT, f"{CHECKPOINT} beside it")
    return None


def save_checkpoint(trainer, path: str | Path | None = None, state: dict | None = None) -> Path:
    """Write the checkpoint (default: output_dir/checkpoint.json and its folder); returns the marker's path.

    state: `trainer_state(trainer)` if already gathered (a sharded model gathers it in every process).

    The folder is complete before the marker names it, so a run killed mid-save keeps its last checkpoint.
    Holds the trainable parameters only (the frozen ones are those of `config.model`).
    """
    path = Path(path) if path is not None else trainer.out / CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    state = dict(trainer_state(trainer) if state is None else state)
    folder = Path(tempfile.mkdtemp(prefix=f"{path.stem}-{state['step']:06d}-", dir=path.parent))
    try:
        save_file(state.pop("trainable"), folder / "policy.safetensors", metadata={"format": "pt"})
        critic = state.pop("critic")
        if critic is not None:
            save_file(critic, folder / "critic.safetensors", metadata={"format": "pt"})
        (folder / "state.json").write_text(json.dumps({k: state.pop(k) for k in JSON_KEYS}, indent=1), encoding="utf-8")
        torch.save(state, folder / "state.pt")
        marker = {"format": FORMAT, "version": VERSION, "folder": folder.name, "step": trainer.step,
                  "written_by": f"reinforce-edu {__version__}"}
        atomic_write_text(path, json.dumps(marker, indent=1))  # the commit point
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    stale = re.compile(rf"{re.escape(path.stem)}-\d{{6}}-[a-z0-9_]{{8}}")
    for old in path.parent.iterdir():
        if old.is_dir() and old != folder and stale.fullmatch(old.name):
            shutil.rmtree(old, ignore_errors=True)
    return path


def _read_marker(path: Path) -> dict:
    """The marker's JSON, checked: this format and version, a folder name inside the run folder."""
    want = f'a JSON marker {{"format": "{FORMAT}", "version": {VERSION}, "folder": ...}}'
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _refuse_old_or_foreign(path, want) from None
    if not isinstance(marker, dict) or marker.get("format") != FORMAT:
        raise _refuse_old_or_foreign(path, want)
    if marker.get("version") != VERSION:
        raise ValueError(f"{path} is a reinforce-edu checkpoint of format version {marker.get('version')} "
                         f"({marker.get('written_by', 'an unknown version')}); this version reads version {VERSION}: "
                         f"restart the run, or resume it with the version that wrote it")
    folder = marker.get("folder")
    if not isinstance(folder, str) or Path(folder).name != folder or folder in ("", ".", ".."):
        raise ValueError(f"{path}: 'folder' must name a folder beside the marker, got {folder!r}")
    return marker


def read_checkpoint(path: str | Path) -> dict:
    """The saved state (the keys of `trainer_state`), read without unpickling anything but tensors and plain data.

    `path`: the marker (output_dir/checkpoint.json) or the run folder holding it.
    """
    path = Path(path)
    path = path / CHECKPOINT if path.is_dir() else path
    folder = path.parent / _read_marker(path)["folder"]
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        state["trainable"] = load_file(folder / "policy.safetensors")
        critic = folder / "critic.safetensors"
        state["critic"] = load_file(critic) if critic.is_file() else None
    except FileNotFoundError as e:
        raise ValueError(f"{path} names the checkpoint folder {folder.name}, which lacks {Path(e.filename).name}") from None
    try:
        state.update(torch.load(folder / "state.pt", map_location="cpu", weights_only=True))
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise ValueError(f"{folder / 'state.pt'} holds more than tensors and plain data, or is damaged; it is not "
                         f"loaded ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return state


def load_checkpoint(trainer, path: str | Path) -> None:
    """Restore weights, optimiser, baseline, RNG states and step; trim the log to that step."""
    state = read_checkpoint(path)
    saved = state["config"]
    ignore = {"steps", "checkpoint_every", "resume", "progress", "output_dir", "device", "keep_freed_memory", "shard"}
    diff = sorted(k for k in saved if k not in ignore and saved[k] != getattr(trainer.config, k, None))
    if diff:
        raise ValueError(f"cannot resume {path}: config differs from the checkpoint's in {diff}")
    named = dict(trainer.policy.named_parameters())
    if set(state["trainable"]) != set(trainer.trainable):
        raise ValueError(f"cannot resume {path}: it holds other trainable parameters than this config")
    with torch.no_grad():
        for n, t in state["trainable"].items():
            named[n].copy_(place(t, named[n]))  # sharded: this process's part of it
    trainer.optimizer.load_state_dict(place_optimizer_state(state["optimizer"], trainer.optimizer))
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
