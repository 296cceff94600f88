"""Command line: release student notebooks, grade submissions.

    python -m reinforce_edu.teaching.assignments release DIR            # student versions, one folder per lesson
    python -m reinforce_edu.teaching.assignments release DIR --source   # also the nbgrader source versions
    python -m reinforce_edu.teaching.assignments grade NOTEBOOK... [--csv scores.csv]
    python -m reinforce_edu.teaching.assignments grade-class [--lesson 02] [--students 100] [--workers 2] [--out DIR]
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
        score = "by hand" if r.manual else f"{r.points:>4g}/{r.max_points:<4g}"
        print(f"{r.notebook:<36} {r.grade_id:<{width}} {score:>9}  {r.feedback[:100]}")
    for nb_name in dict.fromkeys(r.notebook for r in rows):
        got = sum(r.points for r in rows if r.notebook == nb_name and not r.manual)
        total = sum(r.max_points for r in rows if r.notebook == nb_name and not r.manual)
        by_hand = sum(r.max_points for r in rows if r.notebook == nb_name and r.manual)
        print(f"total {nb_name}: {got:g}/{total:g} auto-graded" + (f", + {by_hand:g} points by hand" if by_hand else ""))
    if csv_path is not None:
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["notebook", "exercise", "points", "max_points", "manual", "feedback"])
            for r in rows:
                w.writerow([r.notebook, r.grade_id, r.points, r.max_points, r.manual, r.feedback])
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
    gc = sub.add_parser("grade-class", help="grade a synthetic class of one lesson: time, score table (CSV), plot")
    gc.add_argument("--lesson", default="02", help="the lesson number, e.g. 02")
    gc.add_argument("--students", type=int, default=100)
    gc.add_argument("--workers", type=int, default=2, help="submissions graded at once (one process each)")
    gc.add_argument("--out", type=Path, default=Path("class_scores"))
    args = parser.parse_args(argv)
    try:
        if args.command == "release":
            for p in release(args.dir, source=args.source):
                print(f"wrote {p}")
            return 0
        if args.command == "grade-class":
            from reinforce_edu.teaching.assignments.classroom import run

            if args.students < 1 or args.workers < 1:
                raise ValueError("--students and --workers must be at least 1")
            run(args.lesson, args.students, args.workers, args.out)
            return 0
        return grade(args.notebooks, args.csv)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
