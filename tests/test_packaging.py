"""The library declares a torch floor, never a pin; `make` installs the tested torch through constraints.txt.

A pin in pyproject.toml would make `pip install -e .` in a notebook with a GPU swap its CUDA torch for
another build; the exact version belongs to the set-up (Makefile, environment.yml), read from one file.
"""

import re
from pathlib import Path

import pytest
import torch

from reinforce_edu.perf import provenance
from reinforce_edu.perf.provenance import torch_meets, torch_requirement

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
ROOT = Path(__file__).resolve().parents[1]


def _torch_dependency() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (dep,) = [d for d in deps if re.match(r"torch\b", d)]
    return dep


def _constraints() -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in (ROOT / "constraints.txt").read_text().splitlines()]
    return dict(line.split("==") for line in lines if line)


def test_pyproject_declares_a_torch_floor_not_a_pin():
    dep = _torch_dependency()
    assert "==" not in dep and "<" not in dep, dep
    assert re.fullmatch(r"torch>=2\.\d+", dep), dep
    assert torch_requirement() == dep.removeprefix("torch")  # what lesson 00 checks against


def test_the_floor_is_the_oldest_torch_with_the_apis_the_trainer_uses():
    """torch.nn.utils.get_total_norm / clip_grads_with_norm_ first shipped in torch 2.6 (pytorch PR 139662)."""
    assert torch_requirement() == ">=2.6"
    assert hasattr(torch.nn.utils, "get_total_norm") and hasattr(torch.nn.utils, "clip_grads_with_norm_")
    assert "torch.nn.utils.get_total_norm" in (ROOT / "reinforce_edu" / "llm" / "update.py").read_text()  # the guarded step


def test_make_installs_the_tested_torch_through_the_constraints_file():
    assert _constraints()["torch"] == "2.13.0"
    makefile = (ROOT / "Makefile").read_text()
    assert "torch==" not in makefile  # the pin lives in constraints.txt only
    installs = [line for line in makefile.splitlines() if re.search(r"pip install|\$\(PIP\)", line)]
    assert any("-c constraints.txt" in line for line in installs)
    for line in installs:  # every install goes through the constraints file
        assert "-c constraints.txt" in line or line.lstrip().startswith("$(PIP)"), line
    assert re.search(r"^\$\(STAMP\):.*constraints\.txt", makefile, re.M)  # editing it re-runs the set-up
    conda = re.search(r"torch==([\d.]+)", (ROOT / "environment.yml").read_text())
    assert conda and conda.group(1) == _constraints()["torch"]


def test_torch_meets_reads_versions_as_pip_does():
    assert torch_meets(">=2.6", "2.6.0") and torch_meets(">=2.6", "2.13.0+cpu")
    assert torch_meets(">=2.6", "2.14.0.dev20260101+cu130")  # a nightly counts by its number
    assert not torch_meets(">=2.6", "2.5.1")
    assert not torch_meets(">=2.6,<3", "3.0.0")
    assert torch_meets()  # the installed torch meets the declared floor


def test_torch_requirement_falls_back_to_the_installed_metadata(monkeypatch, tmp_path):
    monkeypatch.setattr(provenance, "PYPROJECT", tmp_path / "missing.toml")
    monkeypatch.setattr(provenance.metadata, "requires", lambda name: ["numpy>=1.26", "torch >=2.7 ; python_version >= '3'"])
    assert torch_requirement() == ">=2.7"
    monkeypatch.setattr(provenance.metadata, "requires", lambda name: ["numpy>=1.26"])
    with pytest.raises(ValueError, match="declares no torch dependency"):
        torch_requirement()
