"""The small data shipped in data/: prompts, sampled completions and preference pairs.

All of it is made by `python scripts/make_data.py` (data/README.md says how):
- prompts_{train,heldout}.jsonl   {"prompt"}: short questions inviting a one- or two-sentence
  answer; the held-out split uses topics that never appear in training.
- completions.jsonl               {"prompt", "completion", "gold", "split"}: answers sampled from
  SmolLM2-135M-Instruct itself, scored by the gold scorer (reinforce_edu.llm.rewards.gold_reward).
- preferences.jsonl               {"prompt", "chosen", "rejected", "chosen_gold", "rejected_gold",
  "split"}: pairs of answers to the same prompt, chosen = the one the gold scorer ranks higher.

Taught in notebooks/05_reward_model.ipynb.
"""

from __future__ import annotations

import json
from pathlib import Path

from reinforce_edu.core._checks import check_choice

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
"""The repository's data/ folder."""

SPLITS = ("train", "heldout")


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} is missing; create it with `python scripts/make_data.py`")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_prompts(split: str = "train") -> list[str]:
    """The prompts of one split ("train" | "heldout"), in file order."""
    check_choice(split, "split", SPLITS)
    return [row["prompt"] for row in _read_jsonl(DATA_DIR / f"prompts_{split}.jsonl")]


def load_completions(split: str = "train") -> list[dict]:
    """Sampled completions of one split: dicts with "prompt", "completion", "gold"."""
    check_choice(split, "split", SPLITS)
    return [row for row in _read_jsonl(DATA_DIR / "completions.jsonl") if row["split"] == split]


def load_preferences(split: str = "train") -> list[dict]:
    """Preference pairs of one split: dicts with "prompt", "chosen", "rejected" (+ gold scores)."""
    check_choice(split, "split", SPLITS)
    return [row for row in _read_jsonl(DATA_DIR / "preferences.jsonl") if row["split"] == split]


def load_prompt_list(source: str) -> list[str]:
    """A data split name ("train" | "heldout") or a .jsonl / .txt file -> list of prompts."""
    if source in SPLITS:
        prompts = load_prompts(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"prompts {source!r} is neither a data split {SPLITS} nor a file")
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            prompts = [json.loads(line)["prompt"] for line in text.splitlines() if line.strip()]
        else:
            prompts = [line for line in text.splitlines() if line.strip()]
    from reinforce_edu.llm.sampling import check_prompts
    return check_prompts(prompts, f"prompts from {source!r}")
