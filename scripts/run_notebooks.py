"""Build lesson notebooks from their sources and execute them in place, in order, storing their outputs.

    python scripts/run_notebooks.py                 # every lesson: lessons/NN_*.py -> notebooks/NN_*.ipynb
    python scripts/run_notebooks.py notebooks/01_*.ipynb
    python scripts/run_notebooks.py --sync-only     # copy the sources' cells into the notebooks, execute nothing

A lesson's source is lessons/NN_name.py (jupytext py:percent; see scripts/sync_lessons.py). Before a
lesson runs, its notebook is rebuilt from that source: the cells are the source's, the notebook-level
metadata (kernelspec) and the cell ids are the stored notebook's, and every output comes from this run.

Uses nbclient (the engine behind `jupyter nbconvert --execute`). Each notebook runs in
a fresh kernel with the notebooks/ folder as working directory; the time each took is
printed, and a table at the end. A failing lesson stops the run with its error, and
the notebook on disk keeps its previous cells and outputs (it is written only on success).

`--sync-only` executes nothing: a code cell whose source is unchanged keeps its stored outputs, a
changed one is stored without outputs. A prose-only edit therefore needs no re-run.

Each executed lesson records the platform that produced its outputs (`provenance.platform_id`: CPU
and its kernel-picking instruction sets, torch build, CUDA device) in its metadata; the test suite
compares checked outputs bit for bit only on that platform (see tests/conftest.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import sync_lessons  # scripts/sync_lessons.py: lesson source <-> notebook

ROOT = Path(__file__).resolve().parents[1]


def execute(path: Path, timeout: int) -> float:
    """Build one notebook from its lesson source, run it top to bottom in a fresh kernel, write it back with outputs."""
    from reinforce_edu.perf.provenance import platform_id

    nb = sync_lessons.build(path)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    nb.metadata["reinforce_edu"] = {"platform": platform_id()}  # where these outputs come from
    tmp = path.with_suffix(".ipynb.tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, path)  # atomic: an interrupted run never leaves a half-written lesson
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*",
                        help="notebooks to run, or their lessons/NN_*.py sources (default: every lesson)")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds allowed per cell")
    parser.add_argument("--sync-only", action="store_true",
                        help="copy the lesson sources into the notebooks without executing; "
                             "outputs of unchanged code cells are kept, those of changed ones cleared")
    args = parser.parse_args(argv)
    paths = ([sync_lessons.notebook_path(p) for p in args.notebooks]
             or [sync_lessons.notebook_path(n) for n in sync_lessons.lesson_names()])
    if not paths:
        print("no notebooks found", file=sys.stderr)
        return 1
    if args.sync_only:
        for path in paths:
            try:
                print(sync_lessons.sync(path), flush=True)
            except (FileNotFoundError, ValueError) as err:  # no source; a source jupytext cannot read
                print(f"[fail] {path.name}: {err}", file=sys.stderr)
                return 1
        return 0
    times = []
    total = time.perf_counter()
    for path in paths:
        print(f"[run] {path.name} ...", flush=True)
        try:
            elapsed = execute(path.resolve(), args.timeout)
        except CellExecutionError as err:
            print(f"[fail] {path.name}:\n{err}", file=sys.stderr)
            return 1
        except FileNotFoundError as err:  # a notebook without its lesson source
            print(f"[fail] {path.name}: {err}", file=sys.stderr)
            return 1
        times.append((path.name, elapsed))
        print(f"[done] {path.name}: {elapsed:.1f} s", flush=True)
    print("\nlesson                                   seconds")
    for name, t in times:
        print(f"{name:<40} {t:7.1f}")
    print(f"{'total':<40} {time.perf_counter() - total:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
