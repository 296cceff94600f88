"""Make lesson 08's tasks: questions a program can check, split into train and held-out with no shared instance.

    python scripts/make_tasks.py          # writes data/tasks_train.jsonl and data/tasks_heldout.jsonl (< 1 s)

Every instance of each family in reinforce_edu/llm/tasks.py is enumerated, shuffled with a fixed seed and
cut in two (`split_tasks`): the held-out questions were never seen in training. One row per line:
{"task", "prompt", "answer"}. Deterministic: the same files on every machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reinforce_edu.llm.tasks import split_tasks  # noqa: E402

PER_FAMILY = {"add": (80, 20), "larger": (80, 20), "upper": (20, 20), "repeat": (20, 20)}
"""(train, held-out) instances per family; the word families have 40 instances in all."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle that splits the instances")
    parser.add_argument("--out", default=str(ROOT / "data"), help="folder for tasks_{train,heldout}.jsonl")
    args = parser.parse_args(argv)
    splits = split_tasks(PER_FAMILY, seed=args.seed)
    for split, rows in splits.items():
        path = Path(args.out) / f"tasks_{split}.jsonl"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        os.replace(tmp, path)  # atomic: never a half-written file
        print(f"{path}: {len(rows)} tasks")


if __name__ == "__main__":
    main()
