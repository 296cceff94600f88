"""nbgrader markup: find the exercises in a lesson, extract them, strip the solutions.

The exercises are read from the lesson sources, `lessons/NN_*.py` (jupytext percent format, nbgrader
metadata in each cell header), so an assignment never waits for the executed notebook; an `.ipynb`
path works too.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

LESSONS_DIR = Path(__file__).resolve().parents[3] / "lessons"

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
ANSWER_STUB = "YOUR ANSWER HERE"  # what nbgrader puts in a written (markdown) answer cell
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}

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


def strip_answer(source: str) -> str:
    """A written answer: the BEGIN/END SOLUTION block (model answer and rubric) becomes YOUR ANSWER HERE."""
    return _solution_re.sub(ANSWER_STUB, source) if BEGIN_SOLUTION in source else ANSWER_STUB


def strip_hidden_tests(source: str) -> str:
    """Remove BEGIN/END HIDDEN TESTS blocks."""
    return _hidden_re.sub("", source).rstrip("\n")


def lesson_paths(lessons_dir: Path = LESSONS_DIR) -> list[Path]:
    """The lesson sources (`NN_*.py`), or the notebooks (`NN_*.ipynb`) where a folder has no sources."""
    return sorted(Path(lessons_dir).glob("[0-9][0-9]_*.py")) or sorted(Path(lessons_dir).glob("[0-9][0-9]_*.ipynb"))


def read_lesson(path: Path) -> nbformat.NotebookNode:
    """A lesson as a notebook: jupytext for a `.py` source, nbformat for an `.ipynb`."""
    path = Path(path)
    if path.suffix == ".py":
        import jupytext

        return jupytext.read(path)
    return nbformat.read(path, as_version=4)


def extract_assignment(lesson_path: Path) -> nbformat.NotebookNode:
    """The assignment *source* (solutions included): a header, then every nbgrader cell, in order."""
    lesson = read_lesson(lesson_path)
    cells = [copy.deepcopy(c) for c in lesson.cells if nbgrader_meta(c)]
    if not any(is_grade(c) for c in cells):
        raise ValueError(f"{lesson_path.name} has no graded exercises (cells with nbgrader grade metadata)")
    for c in cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    header = nbformat.v4.new_markdown_cell(
        f"# Assignment: exercises of lesson `{lesson_path.stem}`\n\n"
        f"Read the lesson `notebooks/{lesson_path.stem}.ipynb` first. Fill in each cell marked `# YOUR CODE HERE` "
        "(delete the `raise NotImplementedError()` line), then run the cell below it: it checks your answer "
        "and says what was expected, for which input, and which part of the lesson to revisit.\n\n"
        "The library's own version of what an exercise asks for is unavailable while it is graded: write it "
        "yourself. Answer the written questions in the cells marked YOUR ANSWER HERE.\n\n"
        "Before you hand in: *Kernel → Restart & Run All*.")
    metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    nb = nbformat.v4.new_notebook(cells=[header] + cells, metadata=metadata)
    return nb


def student_version(source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Solutions replaced by stubs, hidden tests removed, outputs cleared."""
    nb = copy.deepcopy(source)
    for c in nb.cells:
        if c.cell_type == "markdown" and is_solution(c):
            c.source = strip_answer(c.source)
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
        nb = read_lesson(path)
        if any(is_grade(c) for c in nb.cells):
            out[path.stem] = extract_assignment(path)
    return out
