"""The one RLOO step every trainer benchmark here measures (vs_trl.py, torch_compile.py, allocator.py,
train_phase_budget.py), and the options they share.

SmolLM2-135M-Instruct, every parameter trains, the first 64 training prompts, P = 4 prompts × k = 4
samples = 16 completions of at most 32 new tokens, temperature 1, RLOO baseline, β = 0.05, learning
rate 1e-6, the gold scorer as reward. Imported by the scripts beside it (each run as
`python benchmarks/<script>.py`, which puts this folder on the path).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

P, K, NEW_TOKENS, BETA, LR, N_PROMPTS = 4, 4, 32, 0.05, 1e-6, 64
MODEL = "SmolLM2-135M-Instruct"
ROOT = Path(__file__).resolve().parents[1]


def prompts() -> list[str]:
    """The N_PROMPTS training prompts of every benchmark."""
    from reinforce_edu.llm.data import load_prompts
    return load_prompts("train")[:N_PROMPTS]


def trainer(**overrides):
    """Our `Trainer` on the workload (CPU, the precision dtype="auto" picks there); `overrides` replace `TrainConfig` fields."""
    from reinforce_edu.llm.rewards import gold_reward
    from reinforce_edu.llm.trainer import TrainConfig, Trainer
    settings = dict(model="smollm2", reward="gold", prompts_per_step=P, samples_per_prompt=K,
                    max_new_tokens=NEW_TOKENS, beta=BETA, learning_rate=LR, baseline="rloo", trainable_blocks=0,
                    device="cpu", dtype="auto", output_dir=tempfile.mkdtemp(prefix="bench_"), progress=False)
    settings.update(overrides)
    return Trainer(TrainConfig(**settings), prompts=prompts(), reward_fn=gold_reward)


def describe(warmup: int, steps: int) -> dict:
    """The workload as stored beside a result."""
    return {"P": P, "k": K, "max_new_tokens": NEW_TOKENS, "beta": BETA, "learning_rate": LR,
            "warmup": warmup, "steps": steps, "model": MODEL}


def record(args, load: tuple[float, float, float]) -> dict:
    """The fields every stored benchmark result shares: threads, load averages, the workload."""
    return {"threads": args.threads, "load_average_at_start": load, "load_average_at_end": os.getloadavg(),
            "workload": describe(args.warmup, args.steps)}


def parser(doc: str, *, steps: int, warmup: int, warmup_help: str) -> argparse.ArgumentParser:
    """The options every trainer benchmark here takes: --steps, --warmup, --threads (1) and --json."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=steps, help="timed steps (per configuration)")
    p.add_argument("--warmup", type=int, default=warmup, help=warmup_help)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads of every process (1: on a shared CPU more threads than free cores slow "
                        "every run down by large, erratic factors)")
    p.add_argument("--json", type=Path, help="write the results, the command, commit and device here")
    return p


def parse(p: argparse.ArgumentParser, argv: list[str] | None, min_warmup: int = 1) -> argparse.Namespace:
    """Parse `argv`; --steps must be >= 1, --warmup >= `min_warmup` and --threads >= 1."""
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < min_warmup or args.threads < 1:
        p.error(f"--steps and --threads must be >= 1 and --warmup >= {min_warmup}")
    return args


def store(args: argparse.Namespace, argv: list[str] | None, script: str, load: tuple, **fields) -> None:
    """With --json: write `fields` after the shared ones (`record`), led by the provenance (provenance.write_result)."""
    if args.json:
        from reinforce_edu.perf.provenance import write_result
        write_result(args.json, script, argv if argv is not None else sys.argv[1:], ROOT, **record(args, load),
                     **fields)
        print(f"wrote {args.json}")
