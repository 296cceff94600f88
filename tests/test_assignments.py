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
    "importance_weights": "an importance weight for a reused batch",
    "training_step": "one training step",
    "grpo_advantages": "GRPO's group normalisation",
    "ppo_clip_loss": "PPO's clipped surrogate",
    "baseline_shrink": "a measurement: a bias with its standard error, and a decision",
    "self_inclusive_shrink": "a written answer: why the self-inclusive mean shrinks the gradient",
    "when_critic_pays": "a written answer: when a critic pays",
    "pass_at_k": "the unbiased pass@k estimator",
    "zero_variance_filter": "DAPO's zero-variance-group filter",
    "dr_grpo_advantages": "Dr. GRPO's advantages",
}
AUTO_POINTS, MANUAL_POINTS = 36, 4  # the totals the README states


def test_strip_solution_keeps_indentation_and_code_around():
    src = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n\nprint(f)"
    assert strip_solution(src) == "def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\nprint(f)"


def test_strip_hidden_tests():
    src = "check(f)\n### BEGIN HIDDEN TESTS\ncheck(f, hidden=True)\n### END HIDDEN TESTS"
    assert strip_hidden_tests(src) == "check(f)"


@pytest.fixture(scope="module")
def assignments():
    return assignment_notebooks()


def test_the_exercises_cover_the_required_topics_and_the_stated_points(assignments):
    ids = [c.metadata["nbgrader"]["grade_id"] for nb in assignments.values() for c in nb.cells if is_solution(c)]
    assert len(ids) == len(set(ids)) >= 17
    assert set(REQUIRED_TOPICS) <= set(ids), f"missing: {set(REQUIRED_TOPICS) - set(ids)}"
    assert {stem[:2] for stem in assignments} >= {"01", "02", "03", "04", "05", "06", "07", "08"}
    grades = [c for nb in assignments.values() for c in nb.cells if is_grade(c)]
    assert sum(c.metadata["nbgrader"]["points"] for c in grades if c.cell_type == "code") == AUTO_POINTS
    assert sum(c.metadata["nbgrader"]["points"] for c in grades if c.cell_type == "markdown") == MANUAL_POINTS


def test_every_grade_cell_has_hidden_tests_and_points(assignments):
    for nb in assignments.values():
        for c in nb.cells:
            if is_grade(c) and c.cell_type == "code":
                assert "### BEGIN HIDDEN TESTS" in c.source and c.metadata["nbgrader"]["points"] > 0


def test_written_answers_carry_points_and_a_rubric_inside_the_solution(assignments):
    written = [c for nb in assignments.values() for c in nb.cells if c.cell_type == "markdown" and is_grade(c)]
    assert len(written) >= 2
    for c in written:
        assert is_solution(c) and c.metadata["nbgrader"]["points"] > 0
        inside = c.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
        assert "**Rubric" in inside and "**Model answer.**" in inside


def test_student_versions_do_not_import_what_the_exercises_ask_for(assignments):
    from reinforce_edu.teaching.assignments.markup import student_version
    from reinforce_edu.teaching.exercises import (lesson01, lesson02, lesson03, lesson04, lesson05, lesson06, lesson07,
                                                  lesson08)
    from reinforce_edu.teaching.exercises import training_step

    forbidden = {name.rpartition(".")[2] for mod in (lesson01, lesson02, lesson03, lesson04, lesson05, lesson06,
                                                     lesson07, lesson08, training_step)
                 for key, names in vars(mod).items() if key.startswith("FORBID") for name in names}
    assert "LeaveOneOutBaseline" in forbidden and "clipped_surrogate" in forbidden
    for stem, nb in assignments.items():
        code = "\n".join(c.source for c in student_version(nb).cells if c.cell_type == "code")
        imports = [line for line in code.splitlines() if line.lstrip().startswith(("from reinforce_edu", "import reinforce_edu"))]
        assert not any(name in line for line in imports for name in forbidden), (stem, imports)


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
        everything = "\n".join(c.source for c in student.cells)
        assert "### BEGIN SOLUTION" not in everything and "BEGIN HIDDEN TESTS" not in text and "Rubric" not in everything
        code_solutions = sum(is_solution(c) and c.cell_type == "code" for c in student.cells)
        assert text.count("raise NotImplementedError()") == code_solutions
        assert "### BEGIN SOLUTION" in "\n".join(c.source for c in source.cells)


def test_student_versions_fail_every_exercise_with_not_implemented(released, assignments):
    for stem in assignments:
        scores = [s for s in grade_notebook(released / stem / f"{stem}.ipynb") if not s.manual]
        assert scores and all(s.points == 0 for s in scores), [(s.grade_id, s.feedback) for s in scores]
        assert all("NotImplementedError" in s.feedback for s in scores), [s.feedback for s in scores]


def test_solution_versions_pass_every_exercise(released, assignments):
    for stem in assignments:
        scores = [s for s in grade_notebook(released / "source" / stem / f"{stem}.ipynb") if not s.manual]
        assert scores and all(s.points == s.max_points for s in scores), [(s.grade_id, s.feedback) for s in scores]


def test_grade_cli_prints_a_table_and_writes_csv(released, assignments, capsys, tmp_path):
    stem = sorted(assignments)[0]
    csv_path = tmp_path / "scores.csv"
    assert cli(["grade", str(released / "source" / stem / f"{stem}.ipynb"), "--csv", str(csv_path)]) == 0
    out = capsys.readouterr().out
    assert f"total {stem}.ipynb" in out
    assert csv_path.read_text().splitlines()[0] == "notebook,exercise,points,max_points,manual,feedback"


def test_grade_cli_missing_notebook_is_a_clear_error(tmp_path, capsys):
    assert cli(["grade", str(tmp_path / "nope.ipynb")]) == 2
    assert "notebook not found" in capsys.readouterr().err


def _nbgrader(course: Path, *args: str) -> None:
    exe = Path(sys.executable).with_name("nbgrader")
    res = subprocess.run([str(exe), *args], cwd=course, capture_output=True, text=True, timeout=900, env=os.environ)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


ROUND_TRIP = "02_baselines_and_variance"  # one lesson: a code, a batched, a measurement and a written exercise


def test_real_nbgrader_round_trip_scores_right_wrong_and_library_answers(tmp_path, released, monkeypatch):
    """nbgrader itself: generate_assignment -> three filled submissions -> autograde -> the expected scores."""
    from nbgrader.api import Gradebook

    from reinforce_edu.teaching.assignments.submissions import fill, solution_bodies
    from reinforce_edu.teaching.assignments.wrong_answers import WRONG_ANSWERS

    # nbgrader runs its `alembic` migration tool from PATH: put this environment's scripts first
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    course, stem = tmp_path / "course", ROUND_TRIP
    (course / "source").mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'reinforce-edu'\nc.Execute.timeout = 600\n")
    shutil.copytree(released / "source" / stem, course / "source" / stem)
    _nbgrader(course, "generate_assignment", stem, "--force")
    student = nbformat.read(course / "release" / stem / f"{stem}.ipynb", as_version=4)
    right = solution_bodies(nbformat.read(course / "source" / stem / f"{stem}.ipynb", as_version=4))
    wrong = WRONG_ANSWERS[stem]
    submissions = {
        "right": right,
        "mixed": {**right, "leave_one_out_baseline": wrong["leave_one_out_baseline"][0],  # divides by k
                  "gradient_variance": wrong["gradient_variance"][0]},  # a loop where vmap is asked
        "library": {**right, "leave_one_out_baseline": wrong["leave_one_out_baseline:library"][0],
                    "running_mean_baselines": wrong["running_mean_baselines:library"][0]},
    }
    for student_id, answers in submissions.items():
        folder = course / "submitted" / student_id / stem
        folder.mkdir(parents=True)
        nbformat.write(fill(student, answers), folder / f"{stem}.ipynb")
    _nbgrader(course, "autograde", stem, "--force")

    expected_zero = {"right": set(), "mixed": {"leave_one_out_baseline", "gradient_variance"},
                     "library": {"leave_one_out_baseline", "running_mean_baselines"}}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for student_id, zero in expected_zero.items():
            for gid in ("leave_one_out_baseline", "running_mean_baselines", "gradient_variance", "baseline_shrink"):
                grade = gb.find_grade(f"{gid}_check", stem, stem, student_id)
                want = 0 if gid in zero else grade.max_score
                assert grade.auto_score == want, (student_id, gid, grade.auto_score)
            written = gb.find_grade("self_inclusive_shrink", stem, stem, student_id)
            assert written.auto_score is None and written.max_score == 2  # left for the instructor
        assert gb.find_submission(stem, "right").score == 8  # every auto-graded point; the written 2 by hand
    graded = nbformat.read(course / "autograded" / "library" / stem / f"{stem}.ipynb", as_version=4)
    text = "\n".join(str(o.get("evalue", "")) for c in graded.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "this exercise asks you to write leave_one_out_baseline yourself" in text
    assert "this exercise asks you to write running_mean_baselines yourself" in text
