"""Grade a notebook: execute it cell by cell; a grade cell that raises scores 0."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from reinforce_edu.teaching.assignments.markup import is_grade, nbgrader_meta


@dataclass
class ExerciseScore:
    notebook: str
    grade_id: str
    points: float
    max_points: float
    feedback: str  # the checker's message, or the error that failed the cell
    manual: bool = False  # a written answer: scored by hand (points stay 0 here), not by the autograder


def grade_notebook(path: str | Path, timeout: int = 600) -> list[ExerciseScore]:
    """Execute `path` in a fresh kernel (working directory: its folder) and score every grade cell."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    scores = []
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "markdown" and is_grade(cell):
                meta = nbgrader_meta(cell)
                scores.append(ExerciseScore(path.name, meta.get("grade_id", f"cell-{index}"), 0.0,
                                            float(meta.get("points", 0)), "written answer: grade by hand (rubric in "
                                            "the source version)", manual=True))
                continue
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, index)
            except CellExecutionError:
                pass
            if not is_grade(cell):
                continue
            meta = nbgrader_meta(cell)
            errors = [o for o in cell.outputs if o.get("output_type") == "error"]
            text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream").strip()
            if errors and errors[0].get("ename") == "NotImplementedError":
                feedback = "NotImplementedError: not attempted yet (fill in the cell marked # YOUR CODE HERE)"
            elif errors:
                feedback = f"{errors[0].get('ename')}: {errors[0].get('evalue')}".strip()
            else:
                feedback = text.splitlines()[-1] if text else "passed"
            max_points = float(meta.get("points", 0))
            grade_id = meta.get("grade_id", f"cell-{index}").removesuffix("_check")
            scores.append(ExerciseScore(path.name, grade_id,
                                        0.0 if errors else max_points, max_points, feedback))
    return scores
