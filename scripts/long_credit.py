"""Learning speed of sequence vs token credit on the long toy task (T = 32, block rewards); stores JSON.

    python scripts/long_credit.py [--seeds 6] [--steps 80]

Every learner starts from the same warm policy (`toy.long_task.warm_policy`) and trains with
`train_toy` (k = 8 per prompt, leave-one-out, Adam, clip 1.0); seed s draws the same first batch for
every learner (paired). J is sampled (256 completions per prompt) every 10 steps. Writes
data/results/long_credit.json, read by lesson 03. About 2 minutes on a 2-core AMD EPYC Zen 3.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reinforce_edu.perf.provenance import write_result  # noqa: E402
from reinforce_edu.toy.long_task import block_rewards, long_task, sampled_objective, warm_policy  # noqa: E402
from reinforce_edu.toy.train import ToyTrainConfig, train_toy  # noqa: E402

LEARNERS = {
    "sequence": dict(credit="sequence"),
    "token, sequence baseline": dict(credit="token"),
    "token, position baseline": dict(credit="token", token_baseline="position"),
}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--output", default=str(ROOT / "data/results/long_credit.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    task = long_task(32)
    start = warm_policy(task)
    curves: dict[str, list[list[float]]] = {}
    for name, kw in LEARNERS.items():
        curves[name] = []
        for seed in range(args.seeds):
            policy = copy.deepcopy(start)
            metrics = {"J": lambda p: sampled_objective(p, 256, seed=1000)[0]}
            hist = train_toy(policy, task, block_rewards, ToyTrainConfig(steps=args.steps, k=8, lr=args.lr,
                                                                          eval_every=10, seed=seed),
                             metrics=metrics, aggregation="sum", **kw)
            curves[name].append(hist["J"])
            print(name, seed, [round(j, 3) for j in hist["J"]], flush=True)
    write_result(args.output, __file__, argv, ROOT, task={"length": 32, "block": 8, "targets": list(task.targets)},
                 settings={"seeds": args.seeds, "steps": args.steps, "k": 8, "lr": args.lr, "eval_every": 10,
                           "J_samples_per_prompt": 256},
                 steps=hist["step"], J=curves)


if __name__ == "__main__":
    main(sys.argv[1:])
