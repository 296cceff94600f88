"""The variance explorer's redraw time (lesson 02, section 8) against a bare redraw of the same figure.

    python benchmarks/explorer_redraw.py [--repeats 3] [--json data/results/explorer_redraw_cpu_<cpu>.json]

Moves each control in turn as lesson 02 does (12 changes: k, offset, arms, baselines), `--repeats`
times, each time from an explorer that has measured nothing yet but its first view (`forget_rows`), so
every repeat is a first visit of the 12 views. Prints the median and the maximum redraw time, the
median of the redraws that measured some baseline (a new k, offset or arms) and of those that took
every row from earlier views (a baseline toggled), the measurement alone (`explorer_rows`: 100 batches
per selected baseline, nothing kept) and the drawing alone (a redraw minus its measurement). The peer,
measured in the same run, is a PNG of the same figure drawn from scratch (`savefig`) without any
change: the ratio says what a redraw costs against what matplotlib alone needs for the picture.
Target: median redraw ≤ 0.2 s (issue: the explorer must feel immediate). Timings depend on the CPU and
its load; the lesson prints its own and does not check them.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.2
MOVES = [("k", 8), ("k", 3), ("offset", 5.0), ("offset", -2.0), ("n_arms", 10), ("n_arms", 3),
         ("baselines", ("none", "leave_one_out")), ("baselines", ("none", "batch_mean", "value")),
         ("k", 4), ("offset", 0.0), ("n_arms", 5),
         ("baselines", ("none", "running_mean", "batch_mean", "leave_one_out", "value"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="how many times to make the 12 moves")
    parser.add_argument("--json", help="write the results, the command, commit and device here")
    args = parser.parse_args(argv)
    from reinforce_edu.perf.provenance import device_description, write_result
    from reinforce_edu.teaching.explorer import VarianceExplorer, explorer_rows, _one_thread

    explorer = VarianceExplorer()
    redraw, measuring, kept, compute, bare = [], [], [], [], []
    for _ in range(args.repeats):
        explorer.forget_rows()
        for control, value in MOVES:
            getattr(explorer, control).value = value  # one redraw, timed inside update()
            redraw.append(explorer.last_redraw_s)
            (measuring if explorer.measured else kept).append(explorer.last_redraw_s)
            start = time.perf_counter()
            with _one_thread():
                explorer_rows(**explorer.settings(), **explorer.fixed)
            compute.append(time.perf_counter() - start)
            start = time.perf_counter()
            explorer.figure.savefig(io.BytesIO(), format="png")  # the peer: the same figure, drawn again
            bare.append(time.perf_counter() - start)
    med = {name: statistics.median(v) for name, v in (("redraw", redraw), ("compute", compute), ("bare", bare),
                                                      ("measuring", measuring), ("kept", kept or [float("nan")]))}
    drawing = statistics.median(r - c for r, c in zip(redraw, compute))
    print(f"{device_description()}, torch {torch.__version__}, {len(redraw)} redraws")
    print(f"redraw median {1000 * med['redraw']:.0f} ms (max {1000 * max(redraw):.0f} ms): "
          f"{1000 * med['measuring']:.0f} ms for the {len(measuring)} that measured, "
          f"{1000 * med['kept']:.0f} ms for the {len(kept)} with every row kept; measurement alone "
          f"{1000 * med['compute']:.0f} ms, drawing ~{1000 * drawing:.0f} ms; bare redraw of the same figure "
          f"{1000 * med['bare']:.0f} ms")
    print(f"redraw / bare redraw: {med['redraw'] / med['bare']:.2f}x;  median ≤ {TARGET_S} s: "
          f"{'met' if med['redraw'] <= TARGET_S else 'NOT met'}")
    if args.json:
        write_result(args.json, __file__, argv if argv is not None else sys.argv[1:], ROOT,
                     redraw_median_s=med["redraw"], redraw_max_s=max(redraw),
                     redraw_measuring_median_s=med["measuring"], n_measuring=len(measuring),
                     redraw_kept_median_s=med["kept"], n_kept=len(kept),
                     compute_median_s=med["compute"], drawing_median_s=drawing,
                     bare_redraw_median_s=med["bare"], target_s=TARGET_S, n_redraws=len(redraw))
        print(f"wrote {args.json}")
    return 0 if med["redraw"] <= TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
