"""Grade a notebook without a kernel: its code cells run in order with `exec` in one fresh namespace.

The fast path for a whole class (`classroom.grade_class`): no kernel to start and torch imported once,
in the parent process; each submission runs in a forked child of it, so one student's code cannot touch
another's state. It scores exactly as `grading.grade_notebook` does (a grade cell that raises scores 0,
a written answer is left for hand grading); tests/test_classroom.py checks that the two agree.
"""

from __future__ import annotations

import contextlib
import io
import traceback

import nbformat

from reinforce_edu.teaching.assignments.grading import ExerciseScore
from reinforce_edu.teaching.assignments.markup import is_grade, nbgrader_meta


def _feedback(error: BaseException | None, printed: str) -> str:
    if isinstance(error, NotImplementedError):
        return "NotImplementedError: not attempted yet (fill in the cell marked # YOUR CODE HERE)"
    if error is not None:
        return f"{type(error).__name__}: {error}".strip()
    return printed.strip().splitlines()[-1] if printed.strip() else "passed"


def grade_in_process(nb: nbformat.NotebookNode, name: str = "submission.ipynb") -> list[ExerciseScore]:
    """Run every code cell of `nb` in order in a fresh namespace and score every grade cell."""
    namespace: dict = {"__name__": "__main__"}
    scores = []
    for index, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        if cell.cell_type == "markdown" and is_grade(cell):
            scores.append(ExerciseScore(name, meta.get("grade_id", f"cell-{index}"), 0.0, float(meta.get("points", 0)),
                                        "written answer: grade by hand (rubric in the source version)", manual=True))
        if cell.cell_type != "code":
            continue
        out, error = io.StringIO(), None
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(cell.source, f"<cell {index}>", "exec"), namespace)
        except Exception as err:  # a student's error, or a check that failed: the cell scores 0
            error = err
            traceback.clear_frames(err.__traceback__)
        if is_grade(cell):
            points = float(meta.get("points", 0))
            scores.append(ExerciseScore(name, meta.get("grade_id", f"cell-{index}").removesuffix("_check"),
                                        0.0 if error else points, points, _feedback(error, out.getvalue())))
    return scores
