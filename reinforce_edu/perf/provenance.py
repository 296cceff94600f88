"""Where a measurement came from, and how one is taken in a process of its own.

A stored benchmark result leads with its command, commit, device and platform (`write_result`): the
platform (`platform_id`: CPU model and the instruction sets that pick its kernels, torch build, CUDA
device) is also what decides whether a lesson's printed figures repeat bit for bit (tests/conftest.py).
`run_worker` runs one configuration in a fresh process, so its peak memory and compilation are its own,
and reads back the one `RESULT {json}` line it prints (`report_result`). `torch_requirement` and
`torch_meets` say whether the installed torch is one the library declares it works with (lesson 00).
"""

from __future__ import annotations

import json
import os
from importlib import metadata
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import torch
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet


def _cpuinfo(field: str) -> str | None:
    """The first `field : value` line of /proc/cpuinfo (None where there is none)."""
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith(field))
    except (OSError, StopIteration):
        return None


def device_description() -> str:
    """The CUDA device's name, else "CPU: <model name>, <n> cores, <t> torch thread(s)"."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU: {_cpuinfo('model name') or 'unknown CPU'}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s)"


# the instruction sets that pick different matmul and reduction kernels (so different rounding)
_KERNEL_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "asimd", "sve")


def platform_id() -> str:
    """What decides the floating-point results of a lesson: CPU model and kernel-picking instruction sets,
    torch build, CUDA device. e.g. "Intel(R) Xeon(R) Processor [avx2 avx512f avx512_bf16 amx_bf16]; torch 2.13.0+cpu; no CUDA".

    Sampled training runs repeat bit for bit only on the same platform: on another CPU the matmul
    kernels round differently, a sample somewhere flips, and the run's figures move within their noise.
    """
    flags = set((_cpuinfo("flags") or _cpuinfo("Features") or "").split())
    cpu = f"{_cpuinfo('model name') or platform.processor() or platform.machine()} [{' '.join(f for f in _KERNEL_FLAGS if f in flags)}]"
    cuda = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA"
    return f"{cpu}; torch {torch.__version__}; {cuda}"


def device_slug() -> str:
    """"cpu", or the CUDA device's name in lower case with dashes (e.g. "nvidia-h100-80gb-hbm3"): for file names."""
    if torch.cuda.is_available():
        return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name().lower()).strip("-")
    return "cpu"


def git_commit(root: str | Path = ".") -> str | None:
    """HEAD's hash of the repository at `root`, with "+uncommitted" when tracked files differ from it (None outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=root,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=root, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+uncommitted" if dirty else "")


PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
"""The source checkout's project file, read before the installed metadata (which may be older)."""


def torch_requirement() -> str:
    """The torch versions reinforce-edu declares, e.g. ">=2.6": the oldest whose APIs it uses, never a pin.

    Read from pyproject.toml in a source checkout, else from the installed package's metadata.
    """
    deps = None
    try:
        import tomllib  # Python >= 3.11
        project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
        deps = project["dependencies"] if project.get("name") == "reinforce-edu" else None
    except (ImportError, OSError, KeyError):
        pass
    if deps is None:
        deps = metadata.requires("reinforce-edu") or []
    for dep in map(Requirement, deps):
        if dep.name == "torch":
            return str(dep.specifier)
    raise ValueError(f"reinforce-edu declares no torch dependency (read {PYPROJECT} or the installed metadata)")


def torch_meets(requirement: str | None = None, version: str | None = None) -> bool:
    """Whether torch `version` (default: the installed one) lies in `requirement` (default: `torch_requirement()`).

    Local builds ("2.13.0+cpu", "+cu128") and nightlies ("2.14.0.dev20260101") count by their version number.
    """
    requirement = torch_requirement() if requirement is None else requirement
    return SpecifierSet(requirement).contains(str(torch.__version__) if version is None else version, prereleases=True)


def write_result(path: str | Path, script: str | Path, argv: list[str], root: str | Path, **fields) -> Path:
    """Write a benchmark's result to `path` as JSON, led by where it came from.

    The record starts with "command" (`python <script relative to root> <argv>`), "commit"
    (`git_commit(root)`), "device", "platform" (`platform_id()`: the CPU's kernel-picking instruction
    sets tell an AMD Zen 3 from a Zen 4) and "torch", then holds `fields` as given. Returns the path.
    """
    path = Path(path)
    payload = {"command": "python " + " ".join([os.path.relpath(script, root)] + list(argv)),
               "commit": git_commit(root), "device": device_description(), "platform": platform_id(),
               "torch": torch.__version__, **fields}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))
    return path


# ----------------------------------------------------------------------------- one measurement per process

RESULT = "RESULT "
"""Prefix of the one stdout line in which a benchmark worker reports its result as JSON."""


def report_result(result: dict) -> None:
    """Print a worker's result as the line `run_worker` reads back."""
    print(RESULT + json.dumps(result), flush=True)


def run_worker(cmd: list[str], *, cwd: str | Path, label: str, timeout: float | None = None,
               env: dict[str, str] | None = None) -> dict | None:
    """Run a benchmark worker in a fresh process (so its memory peak and compilation are its own).

    Returns the dict of its last `RESULT {json}` line, with "wall_s" added (seconds, start to exit);
    None if it failed (its stderr tail is printed, naming `label`); {"timed_out_s": timeout,
    "stopped_at": epoch seconds, "partial_stdout": what it printed} if it ran past `timeout` seconds. Runs offline: the Hugging Face hub variables are set.
    """
    env = dict(os.environ if env is None else env, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        print(f"  {label} did not finish within {timeout} s", flush=True)
        out = err.stdout or b""
        return {"timed_out_s": timeout, "stopped_at": time.time(),
                "partial_stdout": out.decode(errors="replace") if isinstance(out, bytes) else out}
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        print(f"[{label}] failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    result = json.loads(lines[-1][len(RESULT):])
    result["wall_s"] = time.perf_counter() - start
    return result
