"""Lesson 08 at a larger size: GRPO, Dr. GRPO and DAPO (and RLOO) on verifiable rewards, several seeds.

Every run starts from SmolLM2-135M-Instruct, trains on data/tasks_train.jsonl with the 0/1 correctness reward
(reinforce_edu.llm.verifiable), logs pass rate, entropy per token, zero-variance groups and the length of right
and wrong answers per step, and samples n answers per held-out task before and after (pass@k). One JSON holds
the command, commit, device and every run; lesson 08 plots it beside its own run.

    python scripts/verifiable_run.py                                   # CPU (~20 min on 2 unloaded cores)
    python scripts/verifiable_run.py --steps 200 --prompts-per-step 16 --samples-per-prompt 8 \\
        --max-new-tokens 32 --trainable-blocks 0 --learning-rate 1e-5 --eval-prompts 80   # GPU size (not yet run)

    # lesson 08's stored runs (2-core AMD EPYC Zen 4, fp32: 50 min, then 10 min for each GRPO variant)
    python scripts/verifiable_run.py --methods grpo dr_grpo dapo rloo --seeds 0 1 2 --steps 40 --eval-prompts 32 \\
        --dtype fp32 --out data/results/verifiable_40steps_cpu_amd-epyc-zen4.json
    python scripts/verifiable_run.py --methods grpo --seeds 0 1 2 --steps 40 --eval-prompts 32 --dtype fp32 \\
        --beta 0.05 --out data/results/verifiable_40steps_beta0.05_cpu_amd-epyc-zen4.json    # and --temperature 0.7

    python scripts/verifiable_run.py --methods grpo --seeds 3 4 --steps 40 --eval-prompts 32 --dtype fp32 \\
        --add-to data/results/verifiable_40steps_cpu_amd-epyc-zen4.json     # more seeds into a stored run

Output: data/results/verifiable_<device>.json. With --add-to, the new (method, seed) runs join that file's runs
(its settings must match, seeds aside); each added run carries its own command, commit and device.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from reinforce_edu.llm.verifiable_runs import METHODS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["grpo", "dr_grpo", "dapo"], choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--samples-per-prompt", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--trainable-blocks", type=int, default=2, help="0 = every parameter trains")
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--beta", type=float, default=0.0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--eval-prompts", type=int, default=24, help="held-out tasks, --eval-n answers each")
    parser.add_argument("--eval-n", type=int, default=8)
    parser.add_argument("--model", default="smollm2", help="any causal LM folder (a larger model by path)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on a CPU")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", help="auto | bf16 | fp16 | fp32 (pin it when adding seeds)")
    parser.add_argument("--add-to", type=Path, default=None, help="a stored run to add these seeds' runs to")
    parser.add_argument("--out", type=Path, default=None, help="default: data/results/verifiable_<device>.json")
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        torch.set_num_threads(args.threads)
    from reinforce_edu.llm.config import TrainConfig
    from reinforce_edu.llm.tasks import load_tasks
    from reinforce_edu.llm.verifiable_runs import train_method
    from reinforce_edu.perf.provenance import device_slug, write_result
    base = TrainConfig(model=args.model, prompts_per_step=args.prompts_per_step,
                       samples_per_prompt=args.samples_per_prompt, max_new_tokens=args.max_new_tokens,
                       trainable_blocks=args.trainable_blocks, learning_rate=args.learning_rate, beta=args.beta,
                       temperature=args.temperature, steps=args.steps, device=args.device,
                       dtype=args.dtype, output_dir="runs/verifiable", progress=False)
    stored = load_addition_target(args) if args.add_to else None
    prompts = [t["prompt"] for t in load_tasks("train")]
    heldout = [t["prompt"] for t in load_tasks("heldout")][:args.eval_prompts]
    runs, start = [], time.perf_counter()
    for i, method in enumerate(args.methods):
        for seed in args.seeds:
            if stored and any((r["method"], r["seed"]) == (method, seed) for r in stored["runs"]):
                print(f"{method} seed {seed}: already in {args.add_to}, skipped", flush=True)
                continue
            t0 = time.perf_counter()
            run = train_method(method, seed, base, prompts, heldout, eval_n=args.eval_n,
                               before=not runs and not stored)
            run.pop("trainer")
            run["seconds"] = time.perf_counter() - t0
            runs.append(run)
            print(f"{method} seed {seed}: {run['seconds']:.0f} s", flush=True)
    if stored:
        return add_runs(args, stored, runs, argv)
    before = next(r.pop("before") for r in runs if "before" in r)
    out = args.out or ROOT / "data" / "results" / f"verifiable_{device_slug()}.json"
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    write_result(out, Path(__file__).resolve(), list(sys.argv[1:] if argv is None else argv), ROOT,
                 settings=settings, heldout=heldout, before=before, runs=runs,
                 seconds=time.perf_counter() - start)
    print(f"wrote {out}")
    return 0


SETTINGS_FREE = ("seeds", "methods", "threads", "device", "dtype", "add_to", "out")
"""Settings an addition may change: which runs, and how the machine computes them (not what is computed)."""


def load_addition_target(args: argparse.Namespace) -> dict:
    """The stored run that --add-to names, after checking it was made with the same task settings."""
    path = args.add_to
    if not path.is_file():
        raise ValueError(f"--add-to: {path} is not a file (expected a stored run made by this script)")
    stored = json.loads(path.read_text())
    mine = {k: v for k, v in vars(args).items() if k not in SETTINGS_FREE}
    theirs = {k: v for k, v in stored.get("settings", {}).items() if k not in SETTINGS_FREE}
    differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if differ:
        raise ValueError(f"--add-to: {path} was made with other settings; differing: "
                         + ", ".join(f"{k} (stored {theirs.get(k)!r}, here {mine.get(k)!r})" for k in differ))
    return stored


def add_runs(args: argparse.Namespace, stored: dict, runs: list[dict], argv: list[str] | None) -> int:
    """Append `runs` to the stored file, each with the provenance of this invocation, and list the addition."""
    from reinforce_edu.perf.provenance import device_description, git_commit, platform_id
    command = "python " + " ".join(["scripts/verifiable_run.py"] + list(sys.argv[1:] if argv is None else argv))
    origin = {"command": command, "commit": git_commit(ROOT), "device": device_description(),
              "platform": platform_id(), "torch": torch.__version__, "dtype": args.dtype}
    for run in runs:
        run["origin"] = origin
    stored["runs"].extend(runs)
    stored["settings"]["seeds"] = sorted({r["seed"] for r in stored["runs"]})
    stored["settings"]["methods"] = list(dict.fromkeys(r["method"] for r in stored["runs"]))
    stored.setdefault("additions", []).append({**origin, "runs": [[r["method"], r["seed"]] for r in runs]})
    args.add_to.write_text(json.dumps(stored, indent=1))
    print(f"added {len(runs)} run(s) to {args.add_to}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
