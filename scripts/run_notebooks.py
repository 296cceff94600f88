"""Execute lesson notebooks in place, in order, storing their outputs.

    python scripts/run_notebooks.py                 # every notebooks/NN_*.ipynb
    python scripts/run_notebooks.py notebooks/01_*.ipynb

Uses nbclient (the engine behind `jupyter nbconvert --execute`). Each notebook runs in
a fresh kernel with the notebooks/ folder as working directory; the time each took is
printed, and a table at the end. A failing lesson stops the run with its error, and
the notebook on disk keeps its previous outputs (it is written only on success).

Each executed lesson records the platform that produced its outputs (`measure.platform_id`: CPU
and its kernel-picking instruction sets, torch build, CUDA device) in its metadata; the test suite
compares checked outputs bit for bit only on that platform (see tests/conftest.py).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from reinforce_edu.measure import platform_id

ROOT = Path(__file__).resolve().parents[1]


def execute(path: Path, timeout: int) -> float:
    """Run one notebook top to bottom in a fresh kernel; write it back with outputs."""
    nb = nbformat.read(path, as_version=4)
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
    parser.add_argument("notebooks", nargs="*", help="notebooks to run (default: notebooks/NN_*.ipynb)")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    paths = [Path(p) for p in args.notebooks] or [Path(p) for p in sorted(glob.glob(str(ROOT / "notebooks" / "[0-9][0-9]_*.ipynb")))]
    if not paths:
        print("no notebooks found", file=sys.stderr)
        return 1
    times = []
    total = time.perf_counter()
    for path in paths:
        print(f"[run] {path.name} ...", flush=True)
        try:
            elapsed = execute(path.resolve(), args.timeout)
        except CellExecutionError as err:
            print(f"[fail] {path.name}:\n{err}", file=sys.stderr)
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
