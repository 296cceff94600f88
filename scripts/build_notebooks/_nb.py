"""Tiny helpers for the lesson builders: write a notebook from a list of cells.

    from _nb import md, code, write
    write("notebooks/00_big_picture.ipynb", [md("# Title"), code("print(1)", checked=True)])

`checked=True` puts `# NBVAL_CHECK_OUTPUT` on the cell's first line, so nbval compares
its printed output on every test run. Builders only write sources; execute with
scripts/run_notebooks.py to store outputs.
"""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import nbformat

ROOT = Path(__file__).resolve().parents[2]


def md(text: str):
    return nbformat.v4.new_markdown_cell(dedent(text).strip("\n"))


def code(text: str, checked: bool = False):
    src = dedent(text).strip("\n")
    if checked:
        src = "# NBVAL_CHECK_OUTPUT\n" + src
    return nbformat.v4.new_code_cell(src)


def write(relpath: str, cells: list) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    path = ROOT / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def _nbgrader(grade_id: str, *, grade: bool = False, solution: bool = False, locked: bool = False,
              points: float | None = None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def exercise_setup(grade_id: str, text: str):
    """A read-only code cell that every exercise of the lesson needs (imports); kept in the assignment."""
    cell = code(text)
    cell.metadata.update(_nbgrader(grade_id, locked=True))
    return cell


def exercise(grade_id: str, points: float, statement: str, solution: str, check: str, hidden: str) -> list:
    """Three cells in nbgrader markup: the statement (read-only), the solution, the graded check.

    `solution` must contain the `### BEGIN SOLUTION` / `### END SOLUTION` block; `check` calls a
    checker from reinforce_edu.exercises; `hidden` goes between the hidden-test markers.
    """
    text = md(statement)
    text.metadata.update(_nbgrader(f"{grade_id}_text", locked=True))
    sol = code(solution)
    assert "### BEGIN SOLUTION" in sol.source and "### END SOLUTION" in sol.source, grade_id
    sol.metadata.update(_nbgrader(grade_id, solution=True))
    test = code(dedent(check).strip("\n") + "\n### BEGIN HIDDEN TESTS\n" + dedent(hidden).strip("\n") + "\n### END HIDDEN TESTS")
    test.metadata.update(_nbgrader(f"{grade_id}_check", grade=True, locked=True, points=points))
    return [text, sol, test]
