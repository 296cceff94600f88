"""Does keeping freed memory pay? The trainer with and without `TrainConfig.keep_freed_memory`, on the vs_trl step.

    python benchmarks/allocator.py                      # 2 warm-up + 6 timed steps per configuration
    python benchmarks/allocator.py --steps 6 --json data/results/allocator_cpu_intel-xeon.json   # the stored result

The workload is benchmarks/vs_trl.py's (SmolLM2-135M-Instruct, every parameter trains, the precision dtype="auto" picks (bf16 autocast on the CPUs measured so far for this script),
P = 4 prompts × k = 4 samples × at most 32 new tokens, RLOO, β = 0.05), on a CPU. Two configurations,
each in a fresh process (the allocator setting is process-wide):

  returned  glibc's default: large freed blocks go back to the OS, so each step's tensors land on
            fresh pages and every first write to a page is a page fault
  kept      `keep_freed_memory=True` (the trainer's default, reinforce_edu.perf.allocator): freed memory
            stays in the process and the next step reuses it

Reported per configuration: median s/step over the timed steps, its phases (generate; train = π_ref
pass + training pass + backward + AdamW) and the median page faults per step (`measure.time_phases`),
and the process's peak RSS; then the speed-up of the step and of each phase. Runs offline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import workload
from workload import ROOT, trainer

MODES = ("returned", "kept")


def worker(mode: str, steps: int, warmup: int) -> dict:
    from reinforce_edu.perf.measure import PeakMemory, time_phases

    bench = trainer(keep_freed_memory=mode == "kept")
    with PeakMemory("cpu") as mem:
        rows = time_phases(bench, warmup + steps)[warmup:]
    res = {name: statistics.median(r[key] for r in rows)
           for name, key in (("s_per_step", "step"), ("generate_s", "generate"), ("train_s", "train"),
                             ("faults_per_step", "faults"))}
    res.update(mode=mode, rows=rows, peak_rss_mib=mem.peak / 2 ** 20)
    return res


def main(argv: list[str] | None = None) -> int:
    parser = workload.parser(__doc__, steps=6, warmup=2,
                             warmup_help="untimed first steps (the first touch of every page)")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = workload.parse(parser, argv, min_warmup=0)
    import torch
    torch.set_num_threads(args.threads)
    from reinforce_edu.perf.provenance import device_description, report_result, run_worker
    if args.worker:
        report_result(worker(args.worker, args.steps, args.warmup))
        return 0

    load = os.getloadavg()
    print(f"{device_description()}, torch {torch.__version__}, load average {load[0]:.1f}")
    results = {}
    for mode in MODES:
        cmd = [sys.executable, __file__, "--worker", mode, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--threads", str(args.threads)]
        res = run_worker(cmd, cwd=ROOT, label=mode, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        if res is not None:
            results[mode] = res
            print(f"  {mode:<9}{res['s_per_step']:6.2f} s/step  ({res['wall_s']:.0f} s in all)", flush=True)
    print(f"\n{'memory':<10}{'s/step':>8}{'generate':>10}{'train':>8}{'faults/step':>13}{'peak RSS':>10}")
    for mode, r in results.items():
        print(f"{mode:<10}{r['s_per_step']:>8.2f}{r['generate_s']:>10.2f}{r['train_s']:>8.2f}"
              f"{r['faults_per_step']:>13.0f}{r['peak_rss_mib']:>8.0f}Mi")
    summary = {}
    if len(results) == 2:
        old, new = results["returned"], results["kept"]
        summary = {k: old[k] / new[k] for k in ("s_per_step", "generate_s", "train_s")}
        print(f"kept freed memory: step {summary['s_per_step']:.2f}x faster (generate {summary['generate_s']:.2f}x, "
              f"train {summary['train_s']:.2f}x); page faults per step {old['faults_per_step']:.0f} -> "
              f"{new['faults_per_step']:.0f}; peak RSS {new['peak_rss_mib'] - old['peak_rss_mib']:+.0f} MiB")
    workload.store(args, argv, __file__, load, speedup=summary, results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
