"""Does `torch.compile` pay for our trainer? Eager against compiled transformer blocks, on the vs_trl step.

    python benchmarks/torch_compile.py                     # 2 warm-up + 6 timed steps per configuration
    python benchmarks/torch_compile.py --steps 4 --timeout 420 --json data/results/torch_compile_cpu_intel-xeon.json   # the stored result

The workload is benchmarks/vs_trl.py's (SmolLM2-135M-Instruct, every parameter trains, the precision dtype="auto" picks (bf16 autocast on the CPUs measured so far for this script),
P = 4 prompts × k = 4 samples × at most 32 new tokens, RLOO, β = 0.05). Configurations, each in a
fresh process (so each pays its own compilation):

  eager     the trainer as it ships
  mlp_norm  each block's MLP and its two RMSNorms (policy and π_ref) wrapped in `torch.compile`: the
            parts without a KV cache inside, where inductor fuses the elementwise work (SiLU·gate,
            the norm's square-mean-rsqrt-scale) around the matmuls; one graph serves all 30 blocks
  blocks    every whole block compiled ("regional" compilation, PyTorch's recipe for a stack of
            identical layers). The transformers KV cache keeps per-layer state that dynamo guards on,
            so here each block compiles graphs of its own (the recompile limit is raised to allow it)
Sampling (the KV-cached decode), the no-grad π_ref pass and the training pass (forward and
backward) all run through the compiled modules.

Each configuration compiles from a cold cache (a fresh TORCHINDUCTOR_CACHE_DIR), so its warm-up pays
the whole compilation, as on a new machine. Every step has other shapes (prompt and completion lengths
change), so dynamo recompiles until it marks the lengths dynamic; the warm-up steps pay that too. Reported per configuration: median s/step
over the timed steps and its three phases (generate; score = reward model and gold scorer; train =
π_ref pass + training pass + backward + AdamW), the seconds of the warm-up steps, and for `blocks`
the number of graphs dynamo compiled. The driver prints the speed-up of each phase and the number
of steps after which the compilation time is paid back (never, if it does not speed the step up).

Runs offline, CPU by default (`--device cuda` on a GPU machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

import workload
from workload import K, NEW_TOKENS, P, ROOT, trainer

MODES = ("eager", "mlp_norm", "blocks")


def compile_parts(model, mode: str) -> int:
    """Wrap parts of every transformer block of `model` in torch.compile, in place. Returns how many modules.

    mode "blocks": each whole block; "mlp_norm": each block's MLP and its two RMSNorms (no KV cache inside).
    """
    import torch

    from reinforce_edu.llm.freeze import transformer_blocks
    blocks = transformer_blocks(model)
    if mode == "blocks":
        # the KV cache's per-layer state is guarded on, so each block compiles its own graphs: allow them
        torch._dynamo.config.recompile_limit = 16 * len(blocks)
        torch._dynamo.config.accumulated_recompile_limit = 64 * len(blocks)
        parts = list(blocks)
    else:
        parts = [m for b in blocks for m in (b.mlp, b.input_layernorm, b.post_attention_layernorm)]
    for module in parts:
        module.compile()
    return len(parts)


def worker(mode: str, steps: int, warmup: int, device: str) -> dict:
    from reinforce_edu.perf.measure import time_phases

    bench = trainer(steps=warmup + steps, device=device)
    if mode != "eager":
        compile_parts(bench.policy, mode)
        compile_parts(bench.ref, mode)
    rows = time_phases(bench, warmup + steps)
    step_times = [r["step"] for r in rows]
    timed_ = rows[warmup:]
    res = {"mode": mode, "step_times": step_times, "warmup_s": sum(step_times[:warmup]),
           "s_per_step": statistics.median(r["step"] for r in timed_),
           "generate_s": statistics.median(r["generate"] for r in timed_),
           "score_s": statistics.median(r["score"] for r in timed_),
           "train_s": statistics.median(r["train"] for r in timed_), "skipped": bench.n_skipped}
    if mode != "eager":
        from torch._dynamo.utils import counters
        res["graphs_compiled"] = int(counters["stats"]["unique_graphs"])
        res["graph_breaks"] = int(sum(counters["graph_break"].values()))
    return res


def _spawn(mode: str, args) -> dict | None:
    from reinforce_edu.perf.provenance import run_worker
    cmd = [sys.executable, __file__, "--worker", mode, "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--threads", str(args.threads), "--device", args.device]
    with tempfile.TemporaryDirectory(prefix="inductor_") as cache:  # a cold compile cache: no graph from an earlier run
        res = run_worker(cmd, cwd=ROOT, label=mode, timeout=args.timeout,
                         env=dict(os.environ, PYTHONPATH=str(ROOT), TORCHINDUCTOR_CACHE_DIR=cache))
    if res is not None:
        res["mode"] = mode
        if "s_per_step" in res:
            print(f"  {mode:<8} {res['s_per_step']:6.2f} s/step  ({res['wall_s']:.0f} s in all)", flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    parser = workload.parser(__doc__, steps=6, warmup=2, warmup_help="untimed first steps (they pay the compilation)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per configuration")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = workload.parse(parser, argv)
    import torch
    torch.set_num_threads(args.threads)
    if args.worker:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        res = worker(args.worker, args.steps, args.warmup, args.device)
        from reinforce_edu.perf.provenance import report_result
        report_result(res)
        return 0

    from reinforce_edu.perf.provenance import device_description
    load = os.getloadavg()
    print(f"{device_description()}, torch {torch.__version__}, load average {load[0]:.1f}")
    print(f"workload: P={P} x k={K} x <= {NEW_TOKENS} new tokens, bf16 autocast, every parameter trains, "
          f"{args.warmup} warm-up + {args.steps} timed steps")
    modes = ["eager"] + [m for m in args.modes if m != "eager"]
    results = {m: r for m in modes if (r := _spawn(m, args)) is not None}
    done = {m: r for m, r in results.items() if "s_per_step" in r}
    print(f"\n{'mode':<9}{'s/step':>8}{'generate':>10}{'score':>8}{'train':>8}{'warm-up s':>11}{'graphs':>8}")
    for m, r in done.items():
        print(f"{m:<9}{r['s_per_step']:>8.2f}{r['generate_s']:>10.2f}{r['score_s']:>8.2f}{r['train_s']:>8.2f}"
              f"{r['warmup_s']:>11.1f}{r.get('graphs_compiled', '-'):>8}")
    summary = {}
    e = done.get("eager")
    for m, c in done.items():
        if m == "eager" or e is None:
            continue
        saved = e["s_per_step"] - c["s_per_step"]
        overhead = c["warmup_s"] - e["warmup_s"]
        summary[m] = {**{phase: e[phase] / c[phase] for phase in ("s_per_step", "generate_s", "train_s")},
                      "compile_overhead_s": overhead, "break_even_steps": overhead / saved if saved > 0 else None}
        sm = summary[m]
        verdict = (f"paid back after {sm['break_even_steps']:.0f} steps" if saved > 0
                   else "saves nothing per step: it does not pay")
        print(f"{m}: speed-up step {sm['s_per_step']:.2f}x (generate {sm['generate_s']:.2f}x, train "
              f"{sm['train_s']:.2f}x); compilation costs {overhead:.0f} s in the warm-up, {verdict}")
    for m, r in results.items():
        if "timed_out_s" in r:
            print(f"{m}: did not finish {args.warmup + args.steps} steps within {r['timed_out_s']} s (compilation)")
    workload.store(args, argv, __file__, load, summary=summary, results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
