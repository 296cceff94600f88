"""nbgrader markup: find the exercises in a lesson, extract them, strip the solutions."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

LESSONS_DIR = Path(__file__).resolve().parents[3] / "notebooks"

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"

_solution_re = re.compile(r"^([ \t]*)" + re.escape(BEGIN_SOLUTION) + r"[^\n]*\n.*?^[ \t]*" + re.escape(END_SOLUTION) + r"[^\n]*$",
                          re.S | re.M)
_hidden_re = re.compile(r"^[ \t]*" + re.escape(BEGIN_HIDDEN) + r".*?^[ \t]*" + re.escape(END_HIDDEN) + r"[^\n]*\n?",
                        re.S | re.M)


def nbgrader_meta(cell) -> dict:
    """The cell's nbgrader metadata ({} when the cell is not part of an exercise)."""
    return cell.get("metadata", {}).get("nbgrader", {})


def is_solution(cell) -> bool:
    return bool(nbgrader_meta(cell).get("solution"))


def is_grade(cell) -> bool:
    return bool(nbgrader_meta(cell).get("grade"))


def strip_solution(source: str) -> str:
    """Replace each BEGIN/END SOLUTION block by the stub, keeping its indentation."""
    return _solution_re.sub(lambda m: "\n".join(m.group(1) + line for line in STUB.splitlines()), source)


def strip_hidden_tests(source: str) -> str:
    """Remove BEGIN/END HIDDEN TESTS blocks."""
    return _hidden_re.sub("", source).rstrip("\n")


def lesson_paths(lessons_dir: Path = LESSONS_DIR) -> list[Path]:
    return sorted(Path(lessons_dir).glob("[0-9][0-9]_*.ipynb"))


def extract_assignment(lesson_path: Path) -> nbformat.NotebookNode:
    """The assignment *source* (solutions included): a header, then every nbgrader cell, in order."""
    lesson = nbformat.read(lesson_path, as_version=4)
    cells = [copy.deepcopy(c) for c in lesson.cells if nbgrader_meta(c)]
    if not any(is_grade(c) for c in cells):
        raise ValueError(f"{lesson_path.name} has no graded exercises (cells with nbgrader grade metadata)")
    for c in cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    header = nbformat.v4.new_markdown_cell(
        f"# Assignment: exercises of lesson `{lesson_path.stem}`\n\n"
        f"Read the lesson `notebooks/{lesson_path.name}` first. Fill in each cell marked `# YOUR CODE HERE` "
        "(delete the `raise NotImplementedError()` line), then run the cell below it: it checks your answer "
        "and says what was expected, for which input, and which part of the lesson to revisit.\n\n"
        "Before you hand in: *Kernel → Restart & Run All*.")
    nb = nbformat.v4.new_notebook(cells=[header] + cells, metadata=copy.deepcopy(lesson.metadata))
    return nb


def student_version(source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Solutions replaced by stubs, hidden tests removed, outputs cleared."""
    nb = copy.deepcopy(source)
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        if is_solution(c):
            c.source = strip_solution(c.source)
        if is_grade(c):
            c.source = strip_hidden_tests(c.source)
        c.outputs, c.execution_count = [], None
    return nb


def assignment_notebooks(lessons_dir: Path = LESSONS_DIR) -> dict[str, nbformat.NotebookNode]:
    """{lesson stem: assignment source} for every lesson that has graded exercises."""
    out = {}
    for path in lesson_paths(lessons_dir):
        nb = nbformat.read(path, as_version=4)
        if any(is_grade(c) for c in nb.cells):
            out[path.stem] = extract_assignment(path)
    return out
