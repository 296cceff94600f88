"""Filled-in submissions, made from a student notebook: the instructor's check of the grading itself.

`solution_bodies(source)` reads the answer of every solution cell of an assignment source (the code
between BEGIN/END SOLUTION); `fill(student, answers)` writes answers in place of the stubs of a student
notebook — the worked solution, a usual wrong answer, or one that calls the library. Used by the
nbgrader round-trip test and by `grade-class` (`reinforce_edu.teaching.assignments.classroom`).
"""

from __future__ import annotations

import copy
import re

import nbformat

from reinforce_edu.teaching.assignments.markup import (ANSWER_STUB, BEGIN_SOLUTION, END_SOLUTION, STUB, is_solution,
                                                       nbgrader_meta)

_body_re = re.compile(r"^([ \t]*)" + re.escape(BEGIN_SOLUTION) + r"[^\n]*\n(.*?)^[ \t]*" + re.escape(END_SOLUTION),
                      re.S | re.M)


def _dedent(text: str, indent: str) -> str:
    return "\n".join(line[len(indent):] if line.startswith(indent) else line for line in text.splitlines())


def solution_bodies(source: nbformat.NotebookNode) -> dict[str, str]:
    """{grade_id: the worked answer of that solution cell, without its indentation}."""
    out = {}
    for c in source.cells:
        m = _body_re.search(c.source) if is_solution(c) else None
        if m:
            out[nbgrader_meta(c)["grade_id"]] = _dedent(m.group(2).rstrip("\n"), m.group(1))
    return out


def fill(student: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    """A copy of `student` with each stub of a solution cell named in `answers` replaced by that answer."""
    nb = copy.deepcopy(student)
    for c in nb.cells:
        gid = nbgrader_meta(c).get("grade_id")
        if gid not in answers or not is_solution(c):
            continue
        if c.cell_type == "markdown":
            c.source = c.source.replace(ANSWER_STUB, answers[gid])
            continue
        first = STUB.splitlines()[0]
        m = re.search(r"^([ \t]*)" + re.escape(first) + r"\n[ \t]*" + re.escape(STUB.splitlines()[1]), c.source, re.M)
        if m is None:
            raise ValueError(f"solution cell {gid!r} has no stub to fill (already answered?)")
        indent = m.group(1)
        body = "\n".join(indent + line if line else line for line in answers[gid].splitlines())
        c.source = c.source[:m.start()] + body + c.source[m.end():]
    return nb
