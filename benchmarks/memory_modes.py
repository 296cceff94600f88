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
Reported per run: the process's peak RSS (VmHWM), the RSS after imports and before the model loads, their
difference (`rise`: weights, copies, gradients, optimiser state, activations), the rise in units of the
model's fp32 weights, the trainable parameters; on CUDA also `torch.cuda.max_memory_allocated`. Then the
ratios PPO/REINFORCE per mode and LoRA/full per method. Runs offline.
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

    from reinforce_edu.llm.rewards import gold_reward
    from reinforce_edu.llm.trainer import TrainConfig, Trainer
    from reinforce_edu.perf.measure import PeakMemory

    train_prompts = prompts()
    if MODES[mode].get("lora_rank"):
        import peft  # noqa: F401  (imported before the start reading, like torch and transformers)
    cfg = TrainConfig(model="smollm2", reward="gold", prompts_per_step=P, samples_per_prompt=K,
                      max_new_tokens=NEW_TOKENS, learning_rate=1e-6, method=method, steps=steps,
                      output_dir=tempfile.mkdtemp(prefix="bench_"), progress=False, **MODES[mode])
    with PeakMemory("cpu") as mem:  # RSS: from before the model loads to the end of the last step
        trainer = Trainer(cfg, prompts=train_prompts, reward_fn=gold_reward)
        records = trainer.train()
    start, peak = mem.start, mem.peak
    n_params = sum(p.numel() for n, p in trainer.ref.named_parameters())  # the base model's parameters
    res = {"mode": mode, "method": method, "peak_rss_mib": peak / 2 ** 20, "start_rss_mib": start / 2 ** 20,
           "rise_mib": (peak - start) / 2 ** 20, "model_params": n_params, "model_fp32_mib": 4 * n_params / 2 ** 20,
           "trainable_params": sum(p.numel() for p in trainer.params),
           "critic_trainable_params": sum(p.numel() for p in trainer.critic_params),
           "precision": trainer.precision.as_dict(), "skipped": sum(r["skipped"] is not None for r in records)}
    res["rise_model_sizes"] = res["rise_mib"] / res["model_fp32_mib"]
    if trainer.device.type == "cuda":
        res["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return res


def ratios(results: dict) -> dict:
    """PPO/REINFORCE per mode and LoRA/full per method, of the rise (and of the CUDA peak where measured)."""
    out = {}
    for key in ("rise_mib", "cuda_peak_allocated_mib"):
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
                print(f"  {mode:<8}{method:<10}peak RSS {res['peak_rss_mib']:6.0f} MiB, rise {res['rise_mib']:6.0f} MiB"
                      f" ({res['wall_s']:.0f} s)", flush=True)
    print(f"\n{'mode':<9}{'method':<11}{'trainable':>12}{'peak RSS':>10}{'rise':>8}{'rise/model':>12}")
    for r in results.values():
        print(f"{r['mode']:<9}{r['method']:<11}{r['trainable_params']:>12,}{r['peak_rss_mib']:>8.0f}Mi"
              f"{r['rise_mib']:>6.0f}Mi{r['rise_model_sizes']:>11.2f}x")
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
