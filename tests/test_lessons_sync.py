"""The lesson sources (lessons/NN_name.py, jupytext py:percent) and the stored notebooks hold the same cells.

A lesson is edited in its source; notebooks/NN_name.ipynb is the executed copy that students open and nbval
re-runs. Both must hold the same cells — type, source and the nbgrader/tags metadata the source keeps — or
a fix lands in one and not the other. Nothing is executed here (a fraction of a second per lesson).
"""

import importlib.util
import json
import py_compile
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("sync_lessons", ROOT / "scripts" / "sync_lessons.py")
sync_lessons = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sync_lessons)

LESSONS = sync_lessons.lesson_names()
IPYTHON_ONLY = re.compile(r"^\s*(%|!)")  # line magics, cell magics, shell escapes: not Python


def test_there_are_lessons():
    assert len(LESSONS) >= 8, LESSONS
    assert all(sync_lessons.lesson_path(n).exists() for n in LESSONS)


@pytest.mark.parametrize("name", LESSONS)
def test_notebook_matches_its_lesson_source(name):
    problem = sync_lessons.check(name)
    assert problem is None, problem


def unexecuted_code_cells(notebook: dict) -> list[int]:
    """Indices of the code cells a stored notebook holds without having run them (execution_count null)."""
    return [i for i, c in enumerate(notebook["cells"]) if c["cell_type"] == "code" and c.get("execution_count") is None]


@pytest.mark.parametrize("name", LESSONS)
def test_every_stored_code_cell_was_executed(name):
    # a synced code cell is stored without outputs until the lesson is executed (scripts/run_notebooks.py)
    nb = json.loads(sync_lessons.notebook_path(name).read_text(encoding="utf-8"))
    assert unexecuted_code_cells(nb) == [], f"{name}: execute it with scripts/run_notebooks.py"


def test_an_unexecuted_cell_is_found():
    nb = {"cells": [{"cell_type": "markdown"}, {"cell_type": "code", "execution_count": 3},
                    {"cell_type": "code", "execution_count": None}]}
    assert unexecuted_code_cells(nb) == [2]


@pytest.fixture
def lesson_copy(tmp_path, monkeypatch):
    """Lesson 01's source and notebook, copied to tmp_path, where sync_lessons now looks."""
    name = "01_bandits_policy_gradient"
    (tmp_path / "lessons").mkdir()
    (tmp_path / "notebooks").mkdir()
    shutil.copy(sync_lessons.lesson_path(name), tmp_path / "lessons")
    shutil.copy(sync_lessons.notebook_path(name), tmp_path / "notebooks")
    monkeypatch.setattr(sync_lessons, "LESSONS", tmp_path / "lessons")
    monkeypatch.setattr(sync_lessons, "NOTEBOOKS", tmp_path / "notebooks")
    assert sync_lessons.check(name) is None
    return name, sync_lessons.lesson_path(name), sync_lessons.notebook_path(name)


def _edit_notebook(path: Path, edit) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    edit(nb["cells"])
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding="utf-8")


def test_the_check_can_fail(lesson_copy):
    """Each kind of drift is caught, in either direction, naming the lesson, the cell and the fixing command."""
    name, src, dst = lesson_copy
    original_nb, original_src = dst.read_text(encoding="utf-8"), src.read_text(encoding="utf-8")

    def edit_code(cells):  # the notebook edited, the source not
        cell = next(c for c in cells if c["cell_type"] == "code")
        cell["source"] = "".join(cell["source"]) + "\nx = 1"

    def edit_points(cells):  # an exercise's points changed in the notebook only
        grade = next(c for c in cells if c["metadata"].get("nbgrader", {}).get("grade"))
        grade["metadata"]["nbgrader"]["points"] += 1

    def add_cell(cells):  # a cell only in the notebook
        cells.append({"cell_type": "markdown", "id": "extra", "metadata": {}, "source": ["an extra cell"]})

    cases = [(edit_code, r"cell \d+ of 28 \(lesson line \d+\), code: the source differs at its line \d+"),
             (edit_points, r"cell \d+ of 28 \(lesson line \d+\), code: the metadata differs"),
             (add_cell, r"cell 29: only in the notebook")]
    for edit, expected in cases:
        _edit_notebook(dst, edit)
        problem = sync_lessons.check(name)
        assert problem is not None, edit.__name__
        assert re.search(expected, problem), problem
        assert f"{name}.py" in problem and "scripts/run_notebooks.py --sync-only" in problem, problem
        dst.write_text(original_nb, encoding="utf-8")

    # the source edited, the notebook not: a cell dropped, then a prose line changed
    src.write_text(original_src.rsplit("\n# %%", 1)[0] + "\n", encoding="utf-8")
    assert re.search(r"cell 28: only in the notebook", sync_lessons.check(name) or "")
    src.write_text(original_src.replace("# # 01 · Bandits", "# # 01 · Bandit", 1), encoding="utf-8")
    problem = sync_lessons.check(name)
    assert problem is not None and "cell 1 of 28 (lesson line 1), markdown" in problem, problem

    # and the command it names repairs it: the prose edit is synced, every stored output is kept
    outputs_before = [c.get("outputs") for c in json.loads(original_nb)["cells"]]
    assert "stored outputs kept" in sync_lessons.sync(dst)
    assert sync_lessons.check(name) is None
    assert [c.get("outputs") for c in json.loads(dst.read_text(encoding="utf-8"))["cells"]] == outputs_before

    # a lesson without a notebook, and a notebook without a lesson
    dst.unlink()
    assert "has no notebook" in sync_lessons.check(name)
    dst.write_text(original_nb, encoding="utf-8")
    src.unlink()
    assert "has no lesson source" in sync_lessons.check(name)


@pytest.mark.parametrize("name", LESSONS)
def test_lesson_source_is_python(name, tmp_path):
    """Code cells are real Python: the source compiles (py_compile) once IPython-only lines are blanked."""
    src = sync_lessons.lesson_path(name)
    lines = src.read_text(encoding="utf-8").splitlines()
    plain = tmp_path / src.name
    plain.write_text("\n".join("#" + line if IPYTHON_ONLY.match(line) else line for line in lines) + "\n",
                     encoding="utf-8")
    py_compile.compile(str(plain), cfile=str(tmp_path / (src.name + "c")), dfile=str(src), doraise=True)
