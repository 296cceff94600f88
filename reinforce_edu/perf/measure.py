r"""What a training method costs: peak memory, floating-point operations, and this machine's matmul peak.

Lesson 07 compares methods by what they buy (gold reward, KL) *and* what they cost. Three meters:

- `PeakMemory`: peak memory of a block of code. CUDA: `torch.cuda.max_memory_allocated` (tensor
  bytes). CPU (Linux): the process's peak resident set size, VmHWM, reset at the start of the block
  by writing "5" to /proc/self/clear_refs; RSS counts everything the process holds (weights,
  activations, optimiser state, the Python heap), so compare blocks of one process by their *rise*
  over the RSS at the start. Freed memory that the C allocator keeps would hide a later block's
  peak, so the meter first collects garbage and asks glibc to return free pages (`malloc_trim`).
  Without /proc: `resource.getrusage` peak, which cannot be reset.
- `count_flops(fn)`: the FLOPs `fn` runs, counted by `torch.utils.flop_counter.FlopCounterMode`
  (matmuls and attention, forward and backward; elementwise work is not counted).
- `best_seconds(fn, repeats)`: the least time of a few runs after a warm-up, the timer of the meters below.
- `matmul_peak(dtype)`: the GFLOP/s of a large square matmul — the best this machine does — so
  that a training phase's achieved GFLOP/s = FLOPs / seconds can be put as a fraction of it.
- `matmul_share(fn)`: the share of `fn`'s CPU time spent in matmul kernels (torch profiler), i.e.
  how much of the gap to that peak is matmul speed and how much is everything else.
- `time_phases(trainer, n)`: seconds of each step and of its phases (generate, score, train), and
  its page faults: what benchmarks/torch_compile.py and benchmarks/allocator.py compare.

Where a stored result came from (device, platform, commit) and how a configuration runs in a process of
its own: `reinforce_edu.perf.provenance`.

Taught in notebooks/07_comparison.ipynb; used by benchmarks/vs_trl.py.
"""

from __future__ import annotations

import gc
import resource
import time
from pathlib import Path
from typing import Callable

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    """A `VmXXX:   1234 kB` line of /proc/self/status, in KiB (None where /proc is absent)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def release_memory() -> None:
    """Collect garbage and hand the C allocator's free pages back to the OS (glibc; no-op elsewhere)."""
    from reinforce_edu.perf.allocator import glibc
    gc.collect()
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)


def rss_bytes() -> int | None:
    """The process's resident set size now, in bytes (None where /proc is absent)."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


class PeakMemory:
    """Context manager: peak memory of the block, in bytes (`.peak`), and its rise over the start (`.rise`).

        with PeakMemory(device) as mem:
            trainer.train_step()
        print(mem.peak / 2**20, "MiB", mem.kind)

    device: a torch.device or str; CUDA devices use the allocator's statistics, anything else the
    process's RSS. `.kind` says which was measured: "cuda_allocated", "rss" or "rss_since_start".
    release: on a CPU, first hand freed memory back to the OS (`release_memory`, a few ms to a few
    hundred); False skips it, for a cheap per-step reading (the trainer's log).
    """

    def __init__(self, device: torch.device | str = "cpu", release: bool = True) -> None:
        self.device = torch.device(device)
        self.release = bool(release)
        self.start = self.peak = self.rise = 0
        self.kind = ""

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start, self.kind = torch.cuda.memory_allocated(self.device), "cuda_allocated"
            return self
        if self.release:
            release_memory()
        try:
            _CLEAR_REFS.write_text("5")  # Linux: reset the peak RSS (VmHWM) to the current RSS
            self.kind = "rss"
        except OSError:
            self.kind = "rss_since_start"  # the peak of the whole process so far: cannot be reset
        self.start = rss_bytes() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            hwm = _status_kib("VmHWM")
            self.peak = hwm * 1024 if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.rise = max(0, self.peak - self.start)


def count_flops(fn: Callable[[], object]) -> tuple[int, object]:
    """Run `fn()` once under `FlopCounterMode`: (total FLOPs, fn's result). A multiply-add counts as 2."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        out = fn()
    return int(counter.get_total_flops()), out


MATMUL_OPS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::_scaled_dot_product_flash_attention_for_cpu")


def matmul_share(fn: Callable[[], object]) -> tuple[float, object]:
    """Run `fn()` once under the torch profiler: (the share of its CPU time spent in matmul kernels, fn's result).

    The rest is elementwise work (norms, activations, casts, softmax), memory traffic and
    per-op overhead: what a faster matmul cannot buy back. The profiler's own per-op cost
    counts in the rest, so the share is a slight underestimate.
    """
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        out = fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    return (matmul / total if total else float("nan")), out


def best_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1,
                 device: torch.device | str = "cpu") -> float:
    """The least wall-clock seconds of `fn()` over `repeats` runs, after `warmup` untimed runs.

    The warm-up pays kernel selection and page faults; the minimum drops one-off stalls of a shared
    machine. CUDA work is synchronised before each reading.
    """
    device = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peak(dtype: torch.dtype = torch.bfloat16, n: int = 2048, repeats: int = 10,
                device: torch.device | str = "cpu") -> float:
    """GFLOP/s of an (n, n) @ (n, n) matmul in `dtype` on `device`, best of `repeats` (2n³ FLOPs each)."""
    device = torch.device(device)
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    return 2 * n ** 3 / best_seconds(lambda: a @ b, repeats, warmup=3, device=device) / 1e9


def time_phases(trainer, n_steps: int) -> list[dict]:
    """Run `n_steps` updates of a `trainer.Trainer` and time each one's phases.

    Returns one dict per step: seconds of the whole step ("step"), of sampling ("generate"), of the
    reward functions ("score") and of the rest ("train": π_ref pass, training pass, backward,
    optimiser), and the page faults of the step ("faults", `allocator.page_faults`). CUDA work is
    synchronised before each reading. The trainer's `rollout` and `score` are restored afterwards.
    """
    from reinforce_edu.perf.allocator import page_faults
    cuda = getattr(trainer, "device", torch.device("cpu")).type == "cuda"
    sync = (lambda: torch.cuda.synchronize(trainer.device)) if cuda else (lambda: None)
    seconds: dict[str, float] = {}

    def timed(name, fn):
        def wrapped(*a, **k):
            start = time.perf_counter()
            out = fn(*a, **k)
            sync()
            seconds[name] = time.perf_counter() - start
            return out
        return wrapped

    rows = []
    trainer.rollout, trainer.score = timed("generate", trainer.rollout), timed("score", trainer.score)
    try:
        for _ in range(n_steps):
            faults, start = page_faults(), time.perf_counter()
            trainer.train_step()
            sync()
            step = time.perf_counter() - start
            rows.append({"step": step, "generate": seconds["generate"], "score": seconds["score"],
                         "train": step - seconds["generate"] - seconds["score"], "faults": page_faults() - faults})
    finally:
        del trainer.rollout, trainer.score  # the instance attributes go; the methods show again
    return rows
