"""The KL leash, one change at a time: RLOO k=4 on the lesson-06 task with β = 0.05 and with β = 0,
everything else equal (learning rate, steps, batch, prompts, seeds). Writes one JSON with the command,
the git commit, the device and every run's curve (proxy and gold reward, KL) and held-out evaluation;
lesson 06 plots it beside its own short run.

    python scripts/kl_ablation.py                       # CPU: 3 seeds × 2 β × 24 steps (~40 min, 1 thread)
    python scripts/kl_ablation.py --steps 200 --samples-per-step 64 --max-new-tokens 48 \\
        --trainable-blocks 0 --learning-rate 3e-5 --eval-prompts 80       # a GPU-sized run

Output: data/results/kl_ablation_<device>.json (device: "cpu" with the CPU kind, or the CUDA device name).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    from reinforce_edu.llm.comparison import run_method
    from reinforce_edu.perf.provenance import device_slug, write_result
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--betas", nargs="+", type=float, default=[0.05, 0.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--samples-per-step", type=int, default=8, help="B = P·k with k = 4")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--trainable-blocks", type=int, default=2, help="0 = every parameter trains")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="the same for every β")
    parser.add_argument("--eval-prompts", type=int, default=32, help="held-out prompts, one sample each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on a CPU")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="default: data/results/kl_ablation_<device>.json")
    args = parser.parse_args(argv)

    from full_comparison import load_inputs  # scripts/full_comparison.py: model, tokenizer, prompts
    policy, tokenizer, prompts, held = load_inputs(args.threads, args.eval_prompts)
    settings = dict(steps=args.steps, max_new_tokens=args.max_new_tokens, trainable_blocks=args.trainable_blocks,
                    learning_rate=args.learning_rate, device=args.device)
    out = args.out or ROOT / "data" / "results" / f"kl_ablation_{device_slug()}.json"
    start, runs = time.perf_counter(), []
    for seed in args.seeds:
        for beta in args.betas:
            res = run_method("rloo_k4", seed, samples_per_step=args.samples_per_step, policy=policy,
                             tokenizer=tokenizer, prompts=prompts, eval_prompts=held, beta=beta, **settings)
            res["beta"] = beta
            runs.append(res)
            ev = res["eval"]
            print(f"seed {seed} beta {beta:<5} held-out proxy {ev['proxy']:.3f} gold {ev['gold']:.3f}  "
                  f"KL {res['curve'][-1]['kl']:.2f}  {res['s_per_step']:.1f} s/step", flush=True)
    write_result(out, __file__, argv if argv is not None else sys.argv[1:], ROOT, device_name=device_slug(),
                 seconds=time.perf_counter() - start,
                 settings={**settings, "samples_per_step": args.samples_per_step, "seeds": args.seeds,
                           "betas": args.betas, "method": "rloo_k4", "eval_prompts": len(held)},
                 runs=runs)
    print(f"wrote {out} ({(time.perf_counter() - start) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
