"""Peak memory of REINFORCE and PPO when every parameter trains, when the last 2 blocks train, and with LoRA.

    python benchmarks/memory_modes.py                                    # prints the table and the ratios
    python benchmarks/memory_modes.py --json data/results/memory_modes_cpu_amd-epyc-zen3.json   # the stored result

SmolLM2-135M-Instruct (the real model), the trainer at a small batch: P = 2 prompts × k = 2 samples of at most
16 new tokens, RLOO (REINFORCE) or PPO (2 epochs), the gold scorer as reward (no reward-model backbone), the
precision dtype="auto" picks, `--steps` updates (the first allocates AdamW's moments). Three modes:

  full      trainable_blocks=0: every parameter trains (π_ref a frozen copy)
  blocks2   trainable_blocks=2: the last 2 blocks and the final norm train (π_ref a frozen copy)
  lora8     lora_rank=8, "all-linear": only the adapters train; π_ref is the same model, adapters disabled

Each of the 6 (mode, method) runs in a fresh process (perf.provenance.run_worker), so its peak is its own.
Reported per run, from the process's RSS: `total`, the peak while the trainer is built and trains over the
RSS before the model loaded (the weights, π_ref's copy, the critic, gradients, AdamW's moments, activations;
the loader's own transient peak is excluded: the RSS is read again after loading and the peak counted from
there, `training`), also in units of the model's fp32 size (the seed's "~1× model size"), and the trainable
parameters; on CUDA also `torch.cuda.max_memory_allocated`. The loader maps the weights file lazily, so the
weights become resident only when first used (inside `training`): read `total`. Then the ratios of the
totals, PPO/REINFORCE per mode and LoRA/full per method. Runs offline.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from workload import ROOT, prompts

MODES = {"full": {}, "blocks2": {"trainable_blocks": 2}, "lora8": {"lora_rank": 8}}
METHODS = ("reinforce", "ppo")
P, K, NEW_TOKENS = 2, 2, 16


def worker(mode: str, method: str, steps: int) -> dict:
    import torch

    from reinforce_edu.llm.models import load_model
    from reinforce_edu.llm.rewards import gold_reward
    from reinforce_edu.llm.trainer import TrainConfig, Trainer
    from reinforce_edu.perf.measure import PeakMemory, rss_bytes

    train_prompts = prompts()
    if MODES[mode].get("lora_rank"):
        import peft  # noqa: F401  (imported before the first reading, like torch and transformers)
    cfg = TrainConfig(model="smollm2", reward="gold", prompts_per_step=P, samples_per_prompt=K,
                      max_new_tokens=NEW_TOKENS, learning_rate=1e-6, method=method, steps=steps,
                      output_dir=tempfile.mkdtemp(prefix="bench_"), progress=False, **MODES[mode])
    start = rss_bytes()  # no model yet
    policy, tokenizer = load_model("smollm2")  # fp32, as the trainer loads it
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with PeakMemory("cpu") as mem:  # RSS: from the loaded model (the loader's transient peak excluded) to the end
        trainer = Trainer(cfg, policy=policy, tokenizer=tokenizer, prompts=train_prompts, reward_fn=gold_reward)
        records = trainer.train()
    n_params = sum(p.numel() for n, p in trainer.ref.named_parameters())  # the base model's parameters
    mib = 2 ** 20
    res = {"mode": mode, "method": method, "start_rss_mib": start / mib, "loaded_rss_mib": mem.start / mib,
           "peak_rss_mib": mem.peak / mib, "total_mib": (mem.peak - start) / mib, "training_mib": mem.rise / mib,
           "model_params": n_params, "model_fp32_mib": 4 * n_params / mib,
           "trainable_params": sum(p.numel() for p in trainer.params),
           "critic_trainable_params": sum(p.numel() for p in trainer.critic_params),
           "precision": trainer.precision.as_dict(), "skipped": sum(r["skipped"] is not None for r in records)}
    res["total_model_sizes"] = res["total_mib"] / res["model_fp32_mib"]
    if trainer.device.type == "cuda":
        res["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / mib
    return res


def ratios(results: dict) -> dict:
    """PPO/REINFORCE per mode and LoRA/full per method, of the total (and of the CUDA peak where measured)."""
    out = {}
    for key in ("total_mib", "cuda_peak_allocated_mib"):
        get = lambda m, k: results.get(f"{m}/{k}", {}).get(key)  # noqa: E731
        for mode in MODES:
            a, b = get(mode, "ppo"), get(mode, "reinforce")
            if a and b:
                out[f"{key}: ppo/reinforce, {mode}"] = a / b
        for method in METHODS:
            a, b = get("lora8", method), get("full", method)
            if a and b:
                out[f"{key}: lora8/full, {method}"] = a / b
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2, help="updates per run (the first allocates AdamW's state)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every process")
    parser.add_argument("--json", help="write the results, the command, commit and device here")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    from reinforce_edu.perf.provenance import device_description, report_result, run_worker, write_result
    if args.worker:
        report_result(worker(*args.worker, args.steps))
        return 0
    print(f"{device_description()}, torch {torch.__version__}")
    results = {}
    for mode in MODES:
        for method in METHODS:
            cmd = [sys.executable, __file__, "--worker", mode, method, "--steps", str(args.steps),
                   "--threads", str(args.threads)]
            res = run_worker(cmd, cwd=ROOT, label=f"{mode}/{method}", env=dict(os.environ, PYTHONPATH=str(ROOT)))
            if res is not None:
                results[f"{mode}/{method}"] = res
                print(f"  {mode:<8}{method:<10}total {res['total_mib']:6.0f} MiB ({res['wall_s']:.0f} s)", flush=True)
    print(f"\n{'mode':<9}{'method':<11}{'trainable':>12}{'total':>9}{'total/model':>13}")
    for r in results.values():
        print(f"{r['mode']:<9}{r['method']:<11}{r['trainable_params']:>12,}{r['total_mib']:>7.0f}Mi"
              f"{r['total_model_sizes']:>12.2f}x")
    summary = ratios(results)
    for name, value in summary.items():
        print(f"{name:<40}{value:6.2f}x")
    if args.json:
        write_result(args.json, __file__, argv if argv is not None else sys.argv[1:], ROOT, threads=args.threads,
                     workload={"model": "SmolLM2-135M-Instruct", "P": P, "k": K, "max_new_tokens": NEW_TOKENS,
                               "steps": args.steps, "reward": "gold", "ppo_epochs": 2, "lora_target_modules": "all-linear"},
                     ratios=summary, results=results)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
