"""Where the train phase's time goes, against this machine's matmul peak in the precision it computes in.

    python benchmarks/train_phase_budget.py                 # 3 warm-up steps, then 5 timed train phases
    python benchmarks/train_phase_budget.py --json data/results/train_phase_budget_cpu_intel-xeon.json   # stored

benchmarks/vs_trl.py reports our train phase's achieved GFLOP/s as a share of the matmul peak (no
target: the earlier ">= 40 % of the bf16 peak" was retired). This script splits the phase's time to say what that share is made of, on the same
workload (benchmarks/workload.py: SmolLM2-135M-Instruct, every parameter trains, the precision dtype="auto" picks (bf16 autocast where the CPU multiplies bf16 fast, else fp32), P = 4
prompts x k = 4 samples x at most 32 new tokens, RLOO, beta = 0.05), one torch thread:

  phase     the train phase (pi_ref pass + training pass + backward + clipping + AdamW) of one fixed
            rollout, median of --steps runs; F = its FLOPs (measure.count_flops)
  matmuls   the phase's own matmul calls, recorded (shapes, strides, dtypes) and replayed alone
            back to back (reinforce_edu.perf.roofline): the phase with nothing but its matmuls
  adamw     the fused AdamW step alone, on the trainer's parameters
  rest      phase - matmuls - adamw: norms, rotary embeddings, SiLU, softmax, fp32<->bf16 casts,
            the vocabulary-wide log-softmax, gradient clipping and the per-op overhead

and prints, for a target share s of the peak, the time the phase may take (F / (s * peak)) and how
much of it is left for the rest once its matmuls and AdamW have run. The rollout is sampled once after
the warm-up and reused, so every figure is of the same phase. Runs offline, on a CPU.
"""

from __future__ import annotations

import os
import statistics
import sys

import workload
from workload import trainer



def fix_rollout(bench) -> None:
    """Make `bench.rollout` return the rollout of its next call from then on (an instance attribute)."""
    sample, kept = bench.rollout, []

    def fixed(*args, **kwargs):
        if not kept:
            kept.append(sample(*args, **kwargs))
        return kept[0]
    bench.rollout = fixed


def time_adamw(bench, repeats: int = 3) -> float:
    """Seconds of one step of the trainer's own (fused) AdamW, best of `repeats`; the weights move."""
    import torch

    from reinforce_edu.perf.measure import best_seconds
    for p in bench.params:
        p.grad = torch.randn_like(p) * 1e-3
    return best_seconds(bench.optimizer.step, repeats, warmup=1)


def measure(args) -> dict:

    from reinforce_edu.perf.measure import count_flops, matmul_peak, time_phases
    from reinforce_edu.perf.roofline import record_matmuls, replay_matmuls

    bench = trainer()
    time_phases(bench, args.warmup)  # real steps: the allocator and the kernels settle
    fix_rollout(bench)
    bench.train_step()  # samples the fixed rollout
    phases = [r["train"] for r in time_phases(bench, args.steps)]
    fix_rollout(bench)  # time_phases put the method back; the first call samples again
    bench.train_step()
    flops, _ = count_flops(bench.train_step)
    calls, _ = record_matmuls(bench.train_step)
    matmul_s = replay_matmuls(calls, repeats=3)
    adamw_s = time_adamw(bench)
    peak = matmul_peak(bench.precision.dtype)  # the peak of the precision the phase computes in
    phase_s = statistics.median(phases)
    n_params = sum(p.numel() for p in bench.params)
    return {"phase_s": phase_s, "phase_runs_s": phases, "flops": flops, "matmul_calls": len(calls),
            "matmul_flops": sum(c.flops for c in calls), "matmul_s": matmul_s, "adamw_s": adamw_s,
            "trainable_parameters": n_params, "rest_s": phase_s - matmul_s - adamw_s,
            "precision": bench.precision.name, "matmul_peak_gflops": peak, "share": flops / phase_s / 1e9 / peak,
            "matmul_ceiling_share": flops / matmul_s / 1e9 / peak,
            "matmul_adamw_ceiling_share": flops / (matmul_s + adamw_s) / 1e9 / peak}


def _peak(res: dict) -> float:
    """The matmul peak of a result (results stored before precision was chosen per CPU name it bf16)."""
    return res["matmul_peak_gflops"] if "matmul_peak_gflops" in res else res["bf16_matmul_peak_gflops"]


def budget(res: dict, target: float) -> dict:
    """For a target share of the peak: the phase's allowed seconds and what is left for the rest."""
    allowed = res["flops"] / (target * _peak(res) * 1e9)
    return {"target": target, "allowed_s": allowed, "rest_allowed_s": allowed - res["matmul_s"] - res["adamw_s"]}


def main(argv: list[str] | None = None) -> int:
    parser = workload.parser(__doc__, steps=5, warmup=3, warmup_help="untimed real steps first")
    parser.add_argument("--target", type=float, default=0.40, help="the share of the peak to budget for")
    args = workload.parse(parser, argv)
    if not 0 < args.target <= 1:
        parser.error("--target must be in (0, 1]")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    torch.set_num_threads(args.threads)

    from reinforce_edu.perf.provenance import device_description
    load = os.getloadavg()
    print(f"{device_description()}, torch {torch.__version__}, load average {load[0]:.1f}", flush=True)
    res = measure(args)
    b = budget(res, args.target)
    peak, F = _peak(res), res["flops"] / 1e9
    print(f"{res['precision']} matmul peak ({args.threads} thread(s)): {peak:.0f} GFLOP/s")
    print(f"train phase: {F:.0f} GFLOP in {res['phase_s']:.2f} s = {F / res['phase_s']:.0f} GFLOP/s "
          f"= {res['share']:.1%} of the peak")
    print(f"  its {res['matmul_calls']} matmuls, replayed alone: {res['matmul_s']:.2f} s "
          f"({res['matmul_flops'] / 1e9 / res['matmul_s']:.0f} GFLOP/s): "
          f"ceiling {res['matmul_ceiling_share']:.1%} of the peak")
    print(f"  fused AdamW step alone ({res['trainable_parameters'] / 1e6:.1f} M parameters): {res['adamw_s']:.2f} s: "
          f"matmuls + AdamW ceiling {res['matmul_adamw_ceiling_share']:.1%}")
    print(f"  the rest (norms, activations, casts, log-softmax, clipping, per-op overhead): {res['rest_s']:.2f} s")
    verdict = ("already met" if res["share"] >= b["target"] else
               f"the rest must fit in {b['rest_allowed_s']:.2f} s, {res['rest_s'] / b['rest_allowed_s']:.0f}x less "
               f"than now" if b["rest_allowed_s"] > 0 else "out of reach even if the rest cost nothing")
    print(f"for {b['target']:.0%} of the peak the phase may take {b['allowed_s']:.2f} s: {verdict}")
    workload.store(args, argv, __file__, load, result=res, budget=b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
