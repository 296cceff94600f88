"""Command line: release student notebooks, grade submissions.

    python -m reinforce_edu.teaching.assignments release DIR            # student versions, one folder per lesson
    python -m reinforce_edu.teaching.assignments release DIR --source   # also the nbgrader source versions
    python -m reinforce_edu.teaching.assignments grade NOTEBOOK... [--csv scores.csv]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

import nbformat

from reinforce_edu.teaching.assignments.grading import grade_notebook
from reinforce_edu.teaching.assignments.markup import LESSONS_DIR, assignment_notebooks, student_version


def _write_atomic(nb, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".ipynb.tmp")
    os.close(fd)
    nbformat.write(nb, tmp)
    os.replace(tmp, path)


def release(out_dir: Path, source: bool = False, lessons_dir: Path = LESSONS_DIR) -> list[Path]:
    """Write `out_dir/<lesson>/<lesson>.ipynb` (student version) for every lesson with exercises.

    With `source=True`, also `out_dir/source/<lesson>/<lesson>.ipynb` — the layout
    `nbgrader generate_assignment <lesson>` expects in a course directory.
    """
    written = []
    assignments = assignment_notebooks(lessons_dir)
    if not assignments:
        raise ValueError(f"no lesson in {lessons_dir} has graded exercises")
    for stem, nb in assignments.items():
        path = out_dir / stem / f"{stem}.ipynb"
        _write_atomic(student_version(nb), path)
        written.append(path)
        if source:
            src = out_dir / "source" / stem / f"{stem}.ipynb"
            _write_atomic(nb, src)
            written.append(src)
    return written


def grade(paths: list[Path], csv_path: Path | None = None) -> int:
    """Grade each notebook; print a per-exercise table and totals; optionally write a CSV."""
    rows = []
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"notebook not found: {p}")
        rows.extend(grade_notebook(p))
    width = max([len(r.grade_id) for r in rows] + [8])
    print(f"{'notebook':<36} {'exercise':<{width}} {'score':>9}  feedback")
    for r in rows:
        print(f"{r.notebook:<36} {r.grade_id:<{width}} {r.points:>4g}/{r.max_points:<4g}  {r.feedback[:100]}")
    for nb_name in dict.fromkeys(r.notebook for r in rows):
        got = sum(r.points for r in rows if r.notebook == nb_name)
        total = sum(r.max_points for r in rows if r.notebook == nb_name)
        print(f"total {nb_name}: {got:g}/{total:g}")
    if csv_path is not None:
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["notebook", "exercise", "points", "max_points", "feedback"])
            for r in rows:
                w.writerow([r.notebook, r.grade_id, r.points, r.max_points, r.feedback])
        print(f"wrote {csv_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reinforce_edu.teaching.assignments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    rel = sub.add_parser("release", help="write the student notebooks generated from the lessons")
    rel.add_argument("dir", type=Path)
    rel.add_argument("--source", action="store_true", help="also write nbgrader source/ versions (with solutions)")
    gr = sub.add_parser("grade", help="execute notebooks and print a per-exercise score table")
    gr.add_argument("notebooks", nargs="+", type=Path)
    gr.add_argument("--csv", type=Path, default=None, help="also write the scores to this CSV file")
    args = parser.parse_args(argv)
    try:
        if args.command == "release":
            for p in release(args.dir, source=args.source):
                print(f"wrote {p}")
            return 0
        return grade(args.notebooks, args.csv)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
