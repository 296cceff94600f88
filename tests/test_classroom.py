"""Grading a class: the fast in-process grader agrees with the kernel grader; every stored wrong answer
scores 0; the score table and the plot come out; the round trip from synthetic class to outcome is exact."""

import nbformat
import pytest

from reinforce_edu.teaching.assignments import grade_notebook
from reinforce_edu.teaching.assignments.classroom import grade_class, make_class, miss_table, plot_class, reason, write_csv
from reinforce_edu.teaching.assignments.inprocess import grade_in_process
from reinforce_edu.teaching.assignments.wrong_answers import WRONG_ANSWERS

STEM = "02_baselines_and_variance"


@pytest.fixture(scope="module")
def small_class():
    return make_class("02", students=6, seed=3)


def test_every_stored_wrong_answer_scores_zero_and_the_solution_full():
    from reinforce_edu.teaching.assignments.markup import LESSONS_DIR, extract_assignment, student_version
    from reinforce_edu.teaching.assignments.submissions import fill, solution_bodies

    source = extract_assignment(LESSONS_DIR / f"{STEM}.py")
    student, right = student_version(source), solution_bodies(source)
    scores = {s.grade_id: s for s in grade_in_process(fill(student, right))}
    assert all(s.points == s.max_points for s in scores.values() if not s.manual)

    def only(gid):  # the set-up cells and this one exercise: each wrong answer graded in a fraction of the notebook
        others = {g for g in right if g != gid}
        keep = [c for c in student.cells
                if c.metadata.get("nbgrader", {}).get("grade_id", "").removesuffix("_check").removesuffix("_text") not in others]
        return nbformat.v4.new_notebook(cells=keep, metadata=student.metadata)

    for key, bodies in WRONG_ANSWERS[STEM].items():
        gid, _, kind = key.partition(":")
        if scores[gid].manual:
            continue
        for body in bodies:
            got = {s.grade_id: s for s in grade_in_process(fill(only(gid), {gid: body}))}[gid]
            assert got.points == 0, (gid, body)
            assert got.feedback.startswith("LibraryUnavailableError" if kind == "library" else "ExerciseError"), got.feedback


def test_in_process_grading_agrees_with_the_kernel(small_class, tmp_path):
    notebooks, _, _ = small_class
    for i, nb in enumerate(notebooks[:1]):
        path = tmp_path / f"s{i}.ipynb"
        nbformat.write(nb, path)
        fast = [(s.grade_id, s.points, s.manual) for s in grade_in_process(nb, path.name)]
        kernel = [(s.grade_id, s.points, s.manual) for s in grade_notebook(path)]
        assert fast == kernel


def test_grade_class_outcomes_match_the_answers_given_and_the_outputs_are_written(small_class, tmp_path):
    notebooks, kinds, solution = small_class
    scores, seconds = grade_class(notebooks, workers=2, warmup=solution)
    assert seconds > 0
    expected = {"right": "full marks", "wrong": "wrong answer", "library": "calls the library",
                "not attempted": "not attempted"}
    for s in scores:
        if not s.manual:
            kind = kinds[int(s.notebook[7:10])][s.grade_id]
            assert reason(s) == expected[kind], (s.notebook, s.grade_id, kind, s.feedback)
    table = miss_table(scores)
    shares = [r["full marks"] / r["students"] for r in table]
    assert shares == sorted(shares) and all(r["students"] == len(notebooks) for r in table)
    header = write_csv(scores, tmp_path / "scores.csv").read_text().splitlines()[0]
    assert header == "notebook,exercise,points,max_points,outcome,feedback"
    png = plot_class(table, [1.0, 2.0], 8, tmp_path / "scores.png", "test")
    assert png.stat().st_size > 10_000
