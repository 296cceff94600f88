"""Checked lesson outputs are compared on the platform that produced them, and only there (tests/conftest.py)."""

from pathlib import Path

import nbformat
import pytest

from reinforce_edu.perf.provenance import platform_id

pytest_plugins = ["pytester"]


def _lesson(path: Path, platform: str | None, stored: str) -> None:
    """A one-cell lesson whose stored output is `stored`, where the cell really prints 'the truth'."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nassert 1 + 1 == 2\nprint('the truth')", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stored)]
    nb.cells = [cell]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if platform is not None:
        nb.metadata["reinforce_edu"] = {"platform": platform}
    nbformat.write(nb, path)


@pytest.fixture
def lesson_dir(pytester):
    pytester.makeconftest(Path(__file__).with_name("conftest.py").read_text())
    return pytester


def _run(pytester):
    return pytester.runpytest_subprocess("--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider", timeout=300)


def test_platform_id_names_cpu_torch_and_cuda():
    import re

    import torch
    pid = platform_id()
    assert pid == platform_id()  # the same machine always gives the same id
    cpu, version, cuda = pid.split("; ")
    assert re.fullmatch(r".+ \[[a-z0-9_ ]*\]", cpu) and version == f"torch {torch.__version__}"
    assert cuda == (torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA")


def test_stale_output_fails_on_its_own_platform(lesson_dir):
    _lesson(lesson_dir.path / "lesson.ipynb", platform_id(), "a stale figure\n")
    result = _run(lesson_dir)
    result.assert_outcomes(failed=1)


def test_unrecorded_platform_compares_as_nbval_does(lesson_dir):
    _lesson(lesson_dir.path / "lesson.ipynb", None, "a stale figure\n")
    _run(lesson_dir).assert_outcomes(failed=1)


def test_other_platform_runs_the_cell_but_does_not_compare(lesson_dir, monkeypatch):
    _lesson(lesson_dir.path / "lesson.ipynb", "another CPU; torch 0.0; no CUDA", "a figure of another CPU\n")
    result = _run(lesson_dir)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*lesson outputs not compared*", "lesson.ipynb: executed on another CPU*"])
    monkeypatch.setenv("REINFORCE_EDU_STRICT_OUTPUTS", "1")
    _run(lesson_dir).assert_outcomes(failed=1)


def test_other_platform_still_enforces_the_claims(lesson_dir):
    path = lesson_dir.path / "lesson.ipynb"
    _lesson(path, "another CPU; torch 0.0; no CUDA", "the truth\n")
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source = nb.cells[0].source.replace("1 + 1 == 2", "1 + 1 == 3")  # a claim that fails
    nbformat.write(nb, path)
    _run(lesson_dir).assert_outcomes(failed=1)
