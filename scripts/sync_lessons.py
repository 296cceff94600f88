"""Lesson sources and the notebooks they are stored as, kept in step without executing anything.

A lesson's source is lessons/NN_name.py, in jupytext's py:percent format (`# %%` starts a code cell,
`# %% [markdown]` a markdown cell written as comments; exercise cells carry their nbgrader metadata on
the marker line). notebooks/NN_name.ipynb is the same lesson with its executed outputs stored. How the
two are converted (which metadata the source keeps) is set in jupytext.toml at the repository root.

    python scripts/sync_lessons.py                         # every lesson: its cells into its notebook
    python scripts/sync_lessons.py lessons/01_*.py         # (notebooks/01_*.ipynb names the same lesson)
    python scripts/sync_lessons.py --check                 # report lessons whose notebook differs; exit 1 if any
    python scripts/sync_lessons.py --to-lessons notebooks/01_*.ipynb   # the other way: notebook cells into the lesson

Syncing never executes: a code cell whose source is unchanged keeps its stored outputs, a changed or new
one is stored without outputs (execute the lesson with scripts/run_notebooks.py to fill them). So a
prose-only edit needs no re-run. `scripts/run_notebooks.py --sync-only` does the same as the first form.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import glob
import os
import re
import sys
from pathlib import Path

import jupytext
import nbformat
from jupytext.cell_metadata import _IGNORE_CELL_METADATA
from jupytext.config import load_jupytext_configuration_file
from jupytext.metadata_filter import filter_metadata

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"
NOTEBOOKS = ROOT / "notebooks"
FMT = "py:percent"
CONFIG = load_jupytext_configuration_file(str(ROOT / "jupytext.toml"))
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
_MARKER = re.compile(r"^# %%(\s|$)")


# ---------------------------------------------------------------- paths

def lesson_path(path: str | Path) -> Path:
    """lessons/NN_name.py for a lesson named by its source or its notebook."""
    return LESSONS / (Path(path).stem + ".py")


def notebook_path(path: str | Path) -> Path:
    """notebooks/NN_name.ipynb for a lesson named by its source or its notebook."""
    return NOTEBOOKS / (Path(path).stem + ".ipynb")


def lesson_names() -> list[str]:
    """Every lesson, from both sides: a source without a notebook or a notebook without a source is one too."""
    found = glob.glob(str(LESSONS / "[0-9][0-9]_*.py")) + glob.glob(str(NOTEBOOKS / "[0-9][0-9]_*.ipynb"))
    return sorted({Path(p).stem for p in found})


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- reading, writing

def read_lesson(path: Path) -> nbformat.NotebookNode:
    nb = jupytext.read(path, fmt=FMT, config=CONFIG)
    nb.metadata.pop("jupytext", None)  # jupytext's own bookkeeping, not the lesson's
    return nb


def lesson_text(nb: nbformat.NotebookNode) -> str:
    return jupytext.writes(nb, fmt=FMT, config=CONFIG)


def read_notebook(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file: an interrupted run never leaves a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_notebook(nb: nbformat.NotebookNode, path: Path) -> None:
    write_atomic(path, nbformat.writes(nb) + "\n")  # nbformat.write adds the same final newline


def kept_metadata(cell) -> dict:
    """The part of a cell's metadata the lesson source holds (jupytext.toml's cell_metadata_filter: nbgrader, tags)."""
    return filter_metadata(copy.deepcopy(dict(cell.metadata)), CONFIG.cell_metadata_filter, _IGNORE_CELL_METADATA)


# ---------------------------------------------------------------- comparing

def _first_line_difference(a: str, b: str) -> str:
    la, lb = a.splitlines(), b.splitlines()
    for k in range(max(len(la), len(lb))):
        x = la[k] if k < len(la) else "<no line>"
        y = lb[k] if k < len(lb) else "<no line>"
        if x != y:
            return f"its line {k + 1}: lesson {x[:100]!r}, notebook {y[:100]!r}"
    return f"whitespace at the end: lesson {a[-20:]!r}, notebook {b[-20:]!r}"


def _cell_lines(text: str) -> list[int]:
    """Line number (1-based) of each cell marker in a lesson source."""
    return [k + 1 for k, line in enumerate(text.splitlines()) if _MARKER.match(line)]


def first_difference(lesson: nbformat.NotebookNode, stored: nbformat.NotebookNode, lesson_source: str = "") -> str | None:
    """Where the stored notebook's cells (type, source, nbgrader/tags metadata) first differ from the lesson's; None if nowhere."""
    lines = _cell_lines(lesson_source) if lesson_source else []
    where = (lambda i: f" (lesson line {lines[i]})" if len(lines) == len(lesson.cells) and i < len(lines) else "")
    n, m = len(lesson.cells), len(stored.cells)
    for i, (a, b) in enumerate(zip(lesson.cells, stored.cells)):
        head = f"cell {i + 1} of {n}{where(i)}"
        if a.cell_type != b.cell_type:
            return f"{head}: a {a.cell_type} cell in the lesson, a {b.cell_type} cell in the notebook"
        if a.source != b.source:
            return f"{head}, {a.cell_type}: the source differs at {_first_line_difference(a.source, b.source)}"
        if kept_metadata(a) != kept_metadata(b):
            return f"{head}, {a.cell_type}: the metadata differs: lesson {kept_metadata(a)}, notebook {kept_metadata(b)}"
    if n > m:
        return f"cell {m + 1} of {n}{where(m)}: only in the lesson (the notebook has {m} cells): {lesson.cells[m].source[:80]!r}"
    if m > n:
        return f"cell {n + 1}: only in the notebook (it has {m} cells, the lesson {n}): {stored.cells[n].source[:80]!r}"
    return None


def check(name: str) -> str | None:
    """None if lesson `name` and its notebook hold the same cells, else what differs and how to fix it."""
    src, dst = lesson_path(name), notebook_path(name)
    if not src.exists():
        return (f"{rel(dst)} has no lesson source {rel(src)}. Create it from the notebook: "
                f"`.venv/bin/python scripts/sync_lessons.py --to-lessons {rel(dst)}`")
    if not dst.exists():
        return (f"{rel(src)} has no notebook {rel(dst)}. Build and execute it: "
                f"`.venv/bin/python scripts/run_notebooks.py {rel(dst)}`")
    text = src.read_text(encoding="utf-8")
    diff = first_difference(jupytext.reads(text, fmt=FMT, config=CONFIG), read_notebook(dst), text)
    if diff is None:
        return None
    return (f"{rel(dst)} is out of step with its source {rel(src)}: {diff}.\n"
            f"The lesson source is the truth: `.venv/bin/python scripts/run_notebooks.py --sync-only {rel(dst)}` copies "
            f"its cells into the notebook (outputs of unchanged code cells kept), then "
            f"`.venv/bin/python scripts/run_notebooks.py {rel(dst)}` executes it and stores fresh outputs. "
            f"If the notebook holds the edit to keep, `.venv/bin/python scripts/sync_lessons.py --to-lessons {rel(dst)}` "
            f"writes it into the source instead.")


# ---------------------------------------------------------------- merging

def _carry(source_cell, stored_cell, keep_outputs: bool):
    """The stored cell (id, outputs, other metadata) with the lesson's source and kept metadata."""
    cell = copy.deepcopy(stored_cell)
    cell.source = source_cell.source
    dropped = set(kept_metadata(stored_cell))
    meta = {k: v for k, v in stored_cell.metadata.items() if k not in dropped}
    meta.update(kept_metadata(source_cell))
    if cell.cell_type == "code" and not keep_outputs:
        cell.outputs, cell.execution_count = [], None
        meta.pop("execution", None)  # timings of a run of another source
    cell.metadata = nbformat.NotebookNode(meta)
    return cell


def _fresh(source_cell):
    new = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell,
           "raw": nbformat.v4.new_raw_cell}[source_cell.cell_type]
    return new(source_cell.source, metadata=kept_metadata(source_cell))


def merge(lesson: nbformat.NotebookNode, stored: nbformat.NotebookNode | None):
    """The notebook to store for `lesson`, and how many code cells lost their outputs.

    Cells are aligned on (type, source). An unchanged cell is the stored one (id, outputs, execution
    metadata) with the lesson's nbgrader/tags metadata; a changed cell keeps the id of the stored cell it
    replaces but no outputs; a new cell is new. The notebook-level metadata (kernelspec, the platform that
    executed it) is the stored notebook's.
    """
    if stored is None:
        stored = nbformat.v4.new_notebook(metadata={"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}})
    key = (lambda c: (c.cell_type, c.source))
    cells, cleared = [], 0
    ops = difflib.SequenceMatcher(None, [key(c) for c in lesson.cells], [key(c) for c in stored.cells], autojunk=False)
    for tag, i1, i2, j1, j2 in ops.get_opcodes():
        for k, i in enumerate(range(i1, i2)):
            j = j1 + k
            src = lesson.cells[i]
            if tag == "equal":
                cells.append(_carry(src, stored.cells[j], keep_outputs=True))
                continue
            if tag == "replace" and j < j2 and stored.cells[j].cell_type == src.cell_type:
                cells.append(_carry(src, stored.cells[j], keep_outputs=False))
            else:
                cells.append(_fresh(src))
            cleared += src.cell_type == "code"
    nb = nbformat.v4.new_notebook(metadata=copy.deepcopy(stored.metadata), cells=cells)
    nb.nbformat, nb.nbformat_minor = stored.nbformat, max(stored.nbformat_minor, 5)
    return nb, cleared


def build(name: str | Path) -> nbformat.NotebookNode:
    """The notebook of lesson `name` as its source says, before execution: no outputs, stored ids and kernelspec."""
    src, dst = lesson_path(name), notebook_path(name)
    if not src.exists():
        raise FileNotFoundError(f"{rel(dst)} has no lesson source {rel(src)} "
                                f"(create it: `python scripts/sync_lessons.py --to-lessons {rel(dst)}`)")
    nb, _ = merge(read_lesson(src), read_notebook(dst) if dst.exists() else None)
    nb.metadata.pop("widgets", None)  # the previous run's widget state; execution stores its own
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
    return nb


def sync(name: str | Path) -> str:
    """Copy lesson `name`'s cells into its notebook without executing; returns one line saying what changed."""
    src, dst = lesson_path(name), notebook_path(name)
    if not src.exists():
        raise FileNotFoundError(f"{rel(dst)} has no lesson source {rel(src)}")
    stored = read_notebook(dst) if dst.exists() else None
    if stored is not None and first_difference(read_lesson(src), stored) is None:
        return f"{dst.name}: in step"
    nb, cleared = merge(read_lesson(src), stored)
    write_notebook(nb, dst)
    if cleared:
        return (f"{dst.name}: synced; {cleared} changed or new code cell(s) stored without outputs: "
                f"execute it with `python scripts/run_notebooks.py {rel(dst)}`")
    return f"{dst.name}: synced; every code cell unchanged, stored outputs kept"


def to_lesson(name: str | Path) -> str:
    """Write notebook `name`'s cells into its lesson source (the notebook holds the edit to keep)."""
    src, dst = lesson_path(name), notebook_path(name)
    src.parent.mkdir(parents=True, exist_ok=True)
    text = lesson_text(read_notebook(dst))
    if src.exists() and src.read_text(encoding="utf-8") == text:
        return f"{src.name}: in step"
    write_atomic(src, text)
    return f"{src.name}: written from {rel(dst)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lessons", nargs="*", help="lessons, by source or notebook path (default: every lesson)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="only report lessons out of step; exit 1 if any")
    mode.add_argument("--to-lessons", action="store_true", help="write the notebooks' cells into the lesson sources")
    args = parser.parse_args(argv)
    names = [Path(p).stem for p in args.lessons] or lesson_names()
    if not names:
        print("no lessons found", file=sys.stderr)
        return 1
    if args.check:
        problems = [p for p in map(check, names) if p]
        for p in problems:
            print(p, file=sys.stderr)
        print(f"{len(names) - len(problems)} of {len(names)} lessons in step")
        return 1 if problems else 0
    for name in names:
        print(to_lesson(name) if args.to_lessons else sync(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
