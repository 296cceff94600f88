r"""Tasks a program can check: small procedural questions with exactly one right answer.

Each task family is a template with slots, a generator that enumerates *every* instance of it, and a solver
that reads the answer back from the prompt text alone, so a reward function needs nothing but the prompt:

| family   | prompt (example)                                                        | answer  |
|----------|-------------------------------------------------------------------------|---------|
| `add`    | What is 7 + 12? Answer with just the number.                            | 19      |
| `larger` | Which number is larger, 37 or 52? Answer with just the number.           | 52      |
| `upper`  | Write the word 'lamp' in capital letters. Answer with just the word.     | LAMP    |
| `repeat` | Repeat the word 'frog'. Answer with just the word.                       | frog    |

`split_tasks` shuffles each family's instances with a fixed seed and cuts them into train and held-out
parts that share no instance (the held-out prompts are questions never seen in training, of the same
families). `scripts/make_tasks.py` writes them to data/tasks_{train,heldout}.jsonl; `load_tasks` reads them.
Checking an answer: reinforce_edu.llm.verifiable. Taught in notebooks/08_verifiable_rewards.ipynb.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Callable, Iterator

from reinforce_edu.core._checks import check_choice, check_positive_int
from reinforce_edu.llm.data import DATA_DIR, SPLITS

WORDS = ("cat", "dog", "sun", "tree", "book", "fish", "bird", "lamp", "cake", "ship", "star", "moon", "rain",
         "road", "milk", "door", "hand", "ball", "king", "frog", "bell", "coin", "desk", "rose", "wolf", "lion",
         "bear", "corn", "shoe", "hat", "cup", "box", "pen", "map", "key", "egg", "owl", "fox", "bus", "car")
"""The words of the word tasks: short, common, one token or two for SmolLM2's tokenizer."""


@dataclass(frozen=True)
class Family:
    """One task family: its prompt template, every instance's slots, and the answer from the slots."""

    name: str
    template: str
    """str.format template; its slots are the keys of each instance"""
    instances: Callable[[], Iterator[dict]]
    answer: Callable[[dict], str]


FAMILIES = {f.name: f for f in (
    Family("add", "What is {a} + {b}? Answer with just the number.",
           lambda: ({"a": a, "b": b} for a in range(2, 21) for b in range(2, 21)),
           lambda s: str(int(s["a"]) + int(s["b"]))),
    Family("larger", "Which number is larger, {a} or {b}? Answer with just the number.",
           lambda: ({"a": a, "b": b} for a in range(10, 100) for b in range(10, 100) if a != b),
           lambda s: str(max(int(s["a"]), int(s["b"])))),
    Family("upper", "Write the word '{w}' in capital letters. Answer with just the word.",
           lambda: ({"w": w} for w in WORDS), lambda s: s["w"].upper()),
    Family("repeat", "Repeat the word '{w}'. Answer with just the word.",
           lambda: ({"w": w} for w in WORDS), lambda s: s["w"]),
)}


def _pattern(template: str) -> re.Pattern:
    """The template as a regex whose named groups read its slots back."""
    parts = re.split(r"\{(\w+)\}", template)  # literal, slot, literal, slot, ...
    return re.compile("".join(re.escape(p) if i % 2 == 0 else rf"(?P<{p}>[A-Za-z0-9]+)" for i, p in enumerate(parts)))


_PATTERNS = {name: _pattern(f.template) for name, f in FAMILIES.items()}


def solve(prompt: str) -> str:
    """The right answer to a task prompt, read from the prompt alone. ValueError if no family matches."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    for name, pattern in _PATTERNS.items():
        m = pattern.fullmatch(prompt.strip())
        if m:
            return FAMILIES[name].answer(m.groupdict())
    raise ValueError(f"prompt {prompt!r} matches no task family {tuple(FAMILIES)}")


def split_tasks(per_family: dict[str, tuple[int, int]], seed: int = 0) -> dict[str, list[dict]]:
    """{"train": [...], "heldout": [...]} of {"task", "prompt", "answer"} rows, deterministic in `seed`.

    per_family: {family: (n_train, n_heldout)}. Each family's instances are shuffled with
    random.Random(seed) and cut in two: the first n_heldout are held out, the next n_train train, so the
    splits share no instance. ValueError if a family has fewer than n_train + n_heldout instances.
    """
    out: dict[str, list[dict]] = {"train": [], "heldout": []}
    for name, (n_train, n_held) in per_family.items():
        check_choice(name, "task family", tuple(FAMILIES))
        check_positive_int(n_train, f"n_train of {name}", minimum=0)
        check_positive_int(n_held, f"n_heldout of {name}", minimum=0)
        fam = FAMILIES[name]
        pool = list(fam.instances())
        if n_train + n_held > len(pool):
            raise ValueError(f"task family {name!r} has {len(pool)} instances, fewer than the "
                             f"{n_train} + {n_held} asked for")
        random.Random(f"{seed}:{name}").shuffle(pool)
        for split, slots in (("heldout", pool[:n_held]), ("train", pool[n_held:n_held + n_train])):
            out[split] += [{"task": name, "prompt": fam.template.format(**s), "answer": fam.answer(s)} for s in slots]
    for split in out:  # families interleaved, in a fixed order
        random.Random(f"{seed}:{split}").shuffle(out[split])
    return out


def load_tasks(split: str = "train") -> list[dict]:
    """The task rows of data/tasks_{split}.jsonl: {"task", "prompt", "answer"} (scripts/make_tasks.py)."""
    check_choice(split, "split", SPLITS)
    path = DATA_DIR / f"tasks_{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} is missing; create it with `python scripts/make_tasks.py`")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
