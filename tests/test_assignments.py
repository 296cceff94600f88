"""Assignments generated from the lessons: markup, release, our grader, and real nbgrader."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from reinforce_edu.teaching.assignments import assignment_notebooks, grade_notebook
from reinforce_edu.teaching.assignments.__main__ import main as cli
from reinforce_edu.teaching.assignments.markup import is_grade, is_solution, strip_hidden_tests, strip_solution

REQUIRED_TOPICS = {  # grade_id -> the concept the issue asks an exercise for
    "score_function_estimate": "the score-function estimator",
    "leave_one_out_baseline": "the leave-one-out baseline",
    "running_mean_baselines": "the running-mean baseline",
    "gradient_variance": "per-sample gradient variance",
    "reward_to_go": "reward-to-go",
    "token_mean_loss": "token-mean aggregation with masks",
    "k3": "the k3 KL estimator",
    "reinforce_loss": "the corrected reinforce_loss",
    "bradley_terry_loss": "the Bradley–Terry loss",
    "completion_logprobs": "completion log-probs with padding/EOS masks",
    "rloo_advantages": "RLOO advantages",
    "training_step": "one training step",
}


def test_strip_solution_keeps_indentation_and_code_around():
    src = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n\nprint(f)"
    assert strip_solution(src) == "def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\nprint(f)"


def test_strip_hidden_tests():
    src = "check(f)\n### BEGIN HIDDEN TESTS\ncheck(f, hidden=True)\n### END HIDDEN TESTS"
    assert strip_hidden_tests(src) == "check(f)"


@pytest.fixture(scope="module")
def assignments():
    return assignment_notebooks()


def test_at_least_twelve_exercises_cover_the_required_topics(assignments):
    ids = [c.metadata["nbgrader"]["grade_id"] for nb in assignments.values() for c in nb.cells if is_solution(c)]
    assert len(ids) >= 12
    assert set(REQUIRED_TOPICS) <= set(ids), f"missing: {set(REQUIRED_TOPICS) - set(ids)}"
    assert {stem[:2] for stem in assignments} >= {"01", "02", "03", "04", "05", "06"}


def test_every_grade_cell_has_hidden_tests_and_points(assignments):
    for nb in assignments.values():
        for c in nb.cells:
            if is_grade(c):
                assert "### BEGIN HIDDEN TESTS" in c.source and c.metadata["nbgrader"]["points"] > 0


@pytest.fixture(scope="module")
def released(tmp_path_factory, assignments):
    out = tmp_path_factory.mktemp("release")
    assert cli(["release", str(out), "--source"]) == 0
    return out


def test_release_writes_student_and_source_versions(released, assignments):
    for stem in assignments:
        student = nbformat.read(released / stem / f"{stem}.ipynb", as_version=4)
        source = nbformat.read(released / "source" / stem / f"{stem}.ipynb", as_version=4)
        text = "\n".join(c.source for c in student.cells if c.cell_type == "code")
        assert "### BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
        assert text.count("raise NotImplementedError()") == sum(is_solution(c) for c in student.cells)
        assert "### BEGIN SOLUTION" in "\n".join(c.source for c in source.cells)


def test_student_versions_fail_every_exercise_with_not_implemented(released, assignments):
    for stem in assignments:
        scores = grade_notebook(released / stem / f"{stem}.ipynb")
        assert scores and all(s.points == 0 for s in scores), [(s.grade_id, s.feedback) for s in scores]
        assert all("NotImplementedError" in s.feedback for s in scores), [s.feedback for s in scores]


def test_solution_versions_pass_every_exercise(released, assignments):
    for stem in assignments:
        scores = grade_notebook(released / "source" / stem / f"{stem}.ipynb")
        assert scores and all(s.points == s.max_points for s in scores), [(s.grade_id, s.feedback) for s in scores]


def test_grade_cli_prints_a_table_and_writes_csv(released, assignments, capsys, tmp_path):
    stem = sorted(assignments)[0]
    csv_path = tmp_path / "scores.csv"
    assert cli(["grade", str(released / "source" / stem / f"{stem}.ipynb"), "--csv", str(csv_path)]) == 0
    out = capsys.readouterr().out
    assert f"total {stem}.ipynb" in out
    assert csv_path.read_text().splitlines()[0] == "notebook,exercise,points,max_points,feedback"


def test_grade_cli_missing_notebook_is_a_clear_error(tmp_path, capsys):
    assert cli(["grade", str(tmp_path / "nope.ipynb")]) == 2
    assert "notebook not found" in capsys.readouterr().err


def _nbgrader(course: Path, *args: str) -> None:
    exe = Path(sys.executable).with_name("nbgrader")
    res = subprocess.run([str(exe), *args], cwd=course, capture_output=True, text=True, timeout=900, env=os.environ)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def test_real_nbgrader_generate_and_autograde(tmp_path, released, assignments, monkeypatch):
    from nbgrader.api import Gradebook

    # nbgrader runs its `alembic` migration tool from PATH: put this environment's scripts first
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")

    course = tmp_path / "course"
    (course / "source").mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'reinforce-edu'\nc.Execute.timeout = 600\n")
    for stem in assignments:
        shutil.copytree(released / "source" / stem, course / "source" / stem)
        _nbgrader(course, "generate_assignment", stem, "--force")
        # an untouched student copy, and a copy with the solutions filled in
        shutil.copytree(course / "release" / stem, course / "submitted" / "untouched" / stem)
        shutil.copytree(course / "source" / stem, course / "submitted" / "solutions" / stem)
        _nbgrader(course, "autograde", stem, "--force")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for stem in assignments:
            full = gb.find_submission(stem, "solutions")
            empty = gb.find_submission(stem, "untouched")
            assert full.max_score > 0 and full.score == full.max_score, stem
            assert empty.score == 0, stem
