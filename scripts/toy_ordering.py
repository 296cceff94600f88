"""The Ahmadian ordering in miniature, at full size: six methods × a strong and a weak init × 20 seeds on
the toy sequence task (`reinforce_edu.toy.ordering`), every score exact. Lesson 07 runs a few seeds
itself and reads this file for the rest.

    python scripts/toy_ordering.py --jobs 2        # 20 seeds, two processes of 1 thread each
    python scripts/toy_ordering.py --seeds 0 1 2   # a quick look

Each seed is independent and seeded, so `--jobs` (seeds spread over processes) gives the same numbers.

Output: data/results/toy_ordering.json — command, commit, device, settings, per-seed scores of every
run (exact J_β, E[r], KL; each init's J_β and optimum), the summary with every paired difference.
The scores are exact given the trained weights; the runs are seeded, so the same platform repeats them.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

import torch

from reinforce_edu.perf.provenance import write_result
from reinforce_edu.toy.methods import TOY_METHODS
from reinforce_edu.toy.ordering import INITS, ORDERING_DEFAULTS, run_ordering, summarise_ordering

ROOT = Path(__file__).resolve().parents[1]


def _one_seed(job: tuple) -> dict:
    seed, inits, methods, steps, threads = job
    torch.set_num_threads(threads)
    return run_ordering([seed], inits, methods, steps=steps)


def _merge(parts: list[dict]) -> dict:
    """The per-seed results of `run_ordering`, joined into one as if run with every seed (seed order kept)."""
    out = {"settings": {**parts[0]["settings"], "seeds": [p["settings"]["seeds"][0] for p in parts]}}
    for kind in (k for k in parts[0] if k != "settings"):
        out[kind] = {"J0": [], "J_opt": [], "methods": {m: {key: [] for key in sc} for m, sc in
                                                        parts[0][kind]["methods"].items()}}
        for p in parts:
            out[kind]["J0"] += p[kind]["J0"]
            out[kind]["J_opt"] += p[kind]["J_opt"]
            for m, sc in p[kind]["methods"].items():
                for key, v in sc.items():
                    out[kind]["methods"][m][key] += v
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(20)))
    parser.add_argument("--inits", nargs="+", default=list(INITS), choices=list(INITS))
    parser.add_argument("--methods", nargs="+", default=list(TOY_METHODS), choices=list(TOY_METHODS))
    parser.add_argument("--steps", type=int, default=ORDERING_DEFAULTS["steps"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--jobs", type=int, default=1, help="processes, each running some of the seeds")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "results" / "toy_ordering.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    jobs = [(seed, args.inits, args.methods, args.steps, args.threads) for seed in args.seeds]
    with multiprocessing.get_context("spawn").Pool(max(1, args.jobs)) as pool:
        result = _merge(pool.map(_one_seed, jobs, chunksize=1))
    seconds = time.perf_counter() - start
    summary = summarise_ordering(result)
    for kind, sm in summary.items():
        print(kind, " > ".join(f"{m} {sm['rows'][m]['J']:.3f}±{sm['rows'][m]['J_se']:.3f}" for m in sm["order"]))
    path = write_result(args.out, __file__, argv, ROOT, seconds=seconds, threads=args.threads, jobs=args.jobs,
                        result=result, summary=summary)
    print(f"wrote {path} ({seconds / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
