"""A class of synthetic submissions of one lesson, graded at once: the time it takes, the score table, the plot.

    python -m reinforce_edu.teaching.assignments grade-class [--lesson 02] [--students 100] [--workers 2] [--out DIR]

Each synthetic student answers each exercise with the worked solution, a usual wrong answer, an answer
that calls the library, or nothing, drawn from a fixed seed (the weaker the student and the harder the
exercise, the likelier a miss). Grading forks one child per submission from a parent that has imported
torch and the checkers once (`inprocess.grade_in_process`), `workers` at a time. Writes `scores.csv`
(one row per student and exercise) and `scores.png` (the share of students who miss each exercise, and
why, exercises sorted by how many miss them; and the distribution of total scores).
"""

from __future__ import annotations

import csv
import multiprocessing
import random
import time
from pathlib import Path

from reinforce_edu.teaching.assignments.grading import ExerciseScore
from reinforce_edu.teaching.assignments.inprocess import grade_in_process
from reinforce_edu.teaching.assignments.markup import LESSONS_DIR, lesson_paths, extract_assignment, student_version
from reinforce_edu.teaching.assignments.submissions import fill, solution_bodies
from reinforce_edu.teaching.assignments.wrong_answers import WRONG_ANSWERS

_SUBMISSIONS: list = []  # set in the parent before forking: the children read it, nothing is pickled


def make_class(lesson: str = "02", students: int = 100, seed: int = 0) -> tuple[list, list[dict[str, str]], object]:
    """(the filled notebooks, for each student the kind of answer given to each exercise, the worked solution)."""
    path = next(p for p in lesson_paths(LESSONS_DIR) if p.name.startswith(lesson))
    source = extract_assignment(path)
    student, right = student_version(source), solution_bodies(source)
    wrong = WRONG_ANSWERS.get(path.stem, {})
    rng = random.Random(seed)
    difficulty = {gid: 0.15 + 0.5 * rng.random() for gid in right}
    notebooks, kinds = [], []
    for _ in range(students):
        ability, answers, kind = rng.random(), {}, {}
        for gid, body in right.items():
            options = [("wrong", b) for b in wrong.get(gid, [])] + [("library", b) for b in wrong.get(gid + ":library", [])]
            if rng.random() < 0.95 * ability + 0.5 - difficulty[gid] or not options:
                answers[gid], kind[gid] = body, "right"
            elif rng.random() < 0.15:
                kind[gid] = "not attempted"
            else:
                kind[gid], answers[gid] = rng.choice(options)
        notebooks.append(fill(student, answers))
        kinds.append(kind)
    return notebooks, kinds, fill(student, right)


def _grade_one(index: int) -> list[ExerciseScore]:
    import torch

    torch.set_num_threads(1)
    return grade_in_process(_SUBMISSIONS[index], f"student{index:03d}.ipynb")


def grade_class(notebooks: list, workers: int = 2, warmup=None) -> tuple[list[ExerciseScore], float]:
    """Grade every notebook, each in a forked child; (all scores, seconds taken, the warm-up included).

    `warmup`: a notebook graded once in the parent first (the worked solution), so that what every
    submission needs (imports, torch.func's first trace) is paid once and inherited by each child.
    """
    import torch

    torch.set_num_threads(1)  # no thread pool in the parent: forking stays safe
    _SUBMISSIONS[:] = notebooks
    start = time.perf_counter()
    if warmup is not None:
        missed = [s for s in grade_in_process(warmup, "solution.ipynb") if not s.manual and s.points < s.max_points]
        if missed:
            raise RuntimeError(f"the worked solution does not score full marks: {[(s.grade_id, s.feedback) for s in missed]}")
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, maxtasksperchild=1) as pool:
        per_student = pool.map(_grade_one, range(len(notebooks)), chunksize=1)
    seconds = time.perf_counter() - start
    _SUBMISSIONS.clear()
    return [s for rows in per_student for s in rows], seconds


def reason(score: ExerciseScore) -> str:
    """full marks / wrong answer / calls the library / not attempted / written (by hand)."""
    if score.manual:
        return "written (by hand)"
    if score.points == score.max_points:
        return "full marks"
    if score.feedback.startswith("LibraryUnavailableError"):
        return "calls the library"
    if score.feedback.startswith("NotImplementedError"):
        return "not attempted"
    return "wrong answer"


def write_csv(scores: list[ExerciseScore], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["notebook", "exercise", "points", "max_points", "outcome", "feedback"])
        for s in scores:
            w.writerow([s.notebook, s.grade_id, s.points, s.max_points, reason(s), s.feedback.splitlines()[0][:200]])
    return path


def miss_table(scores: list[ExerciseScore]) -> list[dict]:
    """Per auto-graded exercise: students, share of each outcome; sorted by the share who miss it, most first."""
    rows = {}
    for s in scores:
        if s.manual:
            continue
        row = rows.setdefault(s.grade_id, {"exercise": s.grade_id, "students": 0, "max_points": s.max_points,
                                           "mean_points": 0.0, "full marks": 0, "wrong answer": 0,
                                           "calls the library": 0, "not attempted": 0})
        row["students"] += 1
        row["mean_points"] += s.points
        row[reason(s)] += 1
    for row in rows.values():
        row["mean_points"] /= row["students"]
    return sorted(rows.values(), key=lambda r: r["full marks"] / r["students"])


def plot_class(table: list[dict], totals: list[float], max_total: float, path: Path, title: str) -> Path:
    """Left: share of students per outcome for each exercise, most missed on top. Right: total scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hx) = plt.subplots(1, 2, figsize=(12, 0.45 * len(table) + 2.5), gridspec_kw={"width_ratios": [3, 2]})
    names = [r["exercise"] for r in table]
    left = [0.0] * len(table)
    colours = {"full marks": "tab:green", "wrong answer": "tab:red", "calls the library": "tab:purple",
               "not attempted": "tab:gray"}
    for outcome, colour in colours.items():
        share = [100 * r[outcome] / r["students"] for r in table]
        ax.barh(names, share, left=left, color=colour, label=outcome)
        left = [a + b for a, b in zip(left, share)]
    ax.invert_yaxis()  # the exercise most students miss first, on top
    ax.set_xlabel("students (%)")
    ax.set_ylabel("exercise (most missed first)")
    ax.set_xlim(0, 100)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 1.0 / (len(table) + 4)), ncol=4, fontsize=8)
    ax.set_title(title, fontsize=10)
    hx.hist(totals, bins=range(0, int(max_total) + 2), color="tab:blue", align="left", rwidth=0.85)
    hx.set_xlabel(f"auto-graded total (points out of {max_total:g})")
    hx.set_ylabel("students")
    hx.set_title("distribution of total scores", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(lesson: str, students: int, workers: int, out: Path) -> dict:
    """Make the class, grade it, write scores.csv and scores.png under `out`, print the summary."""
    from reinforce_edu.perf.provenance import device_description

    out.mkdir(parents=True, exist_ok=True)
    notebooks, _, solution = make_class(lesson, students)
    scores, seconds = grade_class(notebooks, workers, warmup=solution)
    table = miss_table(scores)
    by_student: dict[str, float] = {}
    for s in scores:
        by_student[s.notebook] = by_student.get(s.notebook, 0.0) + (0.0 if s.manual else s.points)
    max_total = sum(r["max_points"] for r in table)
    cpu = device_description()
    print(f"graded {students} submissions of lesson {lesson} in {seconds:.1f} s with {workers} workers "
          f"({seconds / students:.2f} s each) on {cpu}")
    print(f"{'exercise':<28} {'full':>5} {'wrong':>6} {'library':>8} {'blank':>6} {'mean pts':>9}")
    for r in table:
        print(f"{r['exercise']:<28} {r['full marks']:>5} {r['wrong answer']:>6} {r['calls the library']:>8} "
              f"{r['not attempted']:>6} {r['mean_points']:>5.2f}/{r['max_points']:g}")
    write_csv(scores, out / "scores.csv")
    plot_class(table, list(by_student.values()), max_total, out / "scores.png",
               f"{students} synthetic submissions of lesson {lesson}: outcome per exercise")
    print(f"wrote {out / 'scores.csv'} and {out / 'scores.png'}")
    return {"seconds": seconds, "students": students, "workers": workers, "cpu": cpu, "table": table}
