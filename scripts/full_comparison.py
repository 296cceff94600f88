"""Lesson 07 at full size: vanilla PG, REINFORCE + running mean, RLOO k=2/k=4, GRPO and PPO on the
lesson-06 task (SmolLM2-135M-Instruct against lesson 05's reward model, gold scorer on the side),
the same sample budget for every method, several seeds. Writes one JSON with the command, the git
commit, the device and every run's curve, evaluation and cost; lesson 07 plots it beside its own run.

    python scripts/full_comparison.py                                  # CPU, moderate size (~10 min, 1 thread)
    python scripts/full_comparison.py --steps 150 --samples-per-step 64 --max-new-tokens 48 \\
        --trainable-blocks 0 --learning-rate 1e-5 --eval-prompts 80      # a GPU-sized run

Output: data/results/comparison_<device>.json (device: "cpu", or the CUDA device name, lower-case).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from reinforce_edu.perf.provenance import device_description, device_slug, git_commit

ROOT = Path(__file__).resolve().parents[1]


def load_inputs(threads: int, eval_prompts: int) -> tuple:
    """The lesson-06 task's inputs: (policy, tokenizer, train prompts, the first `eval_prompts` held-out
    prompts), with `threads` torch threads on a CPU. Shared by the scripts that run it at a larger size."""
    if not torch.cuda.is_available():
        torch.set_num_threads(threads)
    from reinforce_edu.llm.data import load_prompts
    from reinforce_edu.llm.models import load_model
    policy, tokenizer = load_model()
    return policy, tokenizer, load_prompts("train"), load_prompts("heldout")[:eval_prompts]


def main(argv: list[str] | None = None) -> int:
    from reinforce_edu.llm.comparison import METHODS, run_method, summarise
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--samples-per-step", type=int, default=16, help="B = P·k, the same for every method")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--trainable-blocks", type=int, default=2, help="0 = every parameter trains")
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--critic-learning-rate", type=float, default=0.0, help="PPO's critic; 0 = learning rate")
    parser.add_argument("--ppo-epochs", type=int, default=2)
    parser.add_argument("--beta", type=float, default=0.05)
    parser.add_argument("--eval-prompts", type=int, default=48, help="held-out prompts, one sample each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on a CPU")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="default: data/results/comparison_<device>.json")
    args = parser.parse_args(argv)

    policy, tokenizer, prompts, held = load_inputs(args.threads, args.eval_prompts)
    settings = dict(steps=args.steps, max_new_tokens=args.max_new_tokens, trainable_blocks=args.trainable_blocks,
                    learning_rate=args.learning_rate, critic_learning_rate=args.critic_learning_rate,
                    ppo_epochs=args.ppo_epochs, beta=args.beta, device=args.device)
    out = args.out or ROOT / "data" / "results" / f"comparison_{device_slug()}.json"
    start = time.perf_counter()
    results = []
    for seed in args.seeds:
        for name in args.methods:
            res = run_method(name, seed, samples_per_step=args.samples_per_step, policy=policy, tokenizer=tokenizer,
                             prompts=prompts, eval_prompts=held, **settings)
            results.append(res)
            print(f"seed {seed} {name:<13} held-out gold {res['eval']['gold']:.3f}  KL {res['curve'][-1]['kl']:.2f}  "
                  f"{res['s_per_step']:.2f} s/step  memory +{res['memory_rise'] / 2**20:.0f} MiB", flush=True)
    payload = {"command": "python " + " ".join([os.path.relpath(__file__, ROOT)] + (argv if argv is not None
                                                                                   else sys.argv[1:])),
               "commit": git_commit(ROOT), "device": device_description(), "device_name": device_slug(),
               "torch": torch.__version__, "seconds": time.perf_counter() - start,
               "settings": {**settings, "samples_per_step": args.samples_per_step, "seeds": args.seeds,
                            "eval_prompts": len(held)},
               "summary": summarise(results), "runs": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, out)
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} "
          f"({payload['seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
