"""Classroom assignments generated from the lessons (nbgrader markup), and their autograder.

Exercises live *in* the lessons, marked with nbgrader's own markup:
- solution cells (metadata ``nbgrader.solution = true``) hold the answer between
  ``### BEGIN SOLUTION`` / ``### END SOLUTION``;
- grade cells (``nbgrader.grade = true``, with ``points``) call a checker from
  `reinforce_edu.teaching.exercises`, with extra cases between ``### BEGIN HIDDEN TESTS`` /
  ``### END HIDDEN TESTS``;
- read-only cells (nbgrader metadata, neither) carry the exercise text and set-up.

`release` extracts those cells from each lesson into an assignment notebook and strips
the solutions and hidden tests (the student version); `grade` executes notebooks and
scores each exercise. Both also work with real nbgrader (`nbgrader generate_assignment`,
`nbgrader autograde`) on the extracted source notebooks.

    python -m reinforce_edu.teaching.assignments release DIR [--source]
    python -m reinforce_edu.teaching.assignments grade NOTEBOOK... [--csv FILE]
"""

from reinforce_edu.teaching.assignments.markup import LESSONS_DIR, assignment_notebooks, extract_assignment, student_version
from reinforce_edu.teaching.assignments.grading import grade_notebook

__all__ = ["LESSONS_DIR", "assignment_notebooks", "extract_assignment", "student_version", "grade_notebook"]
