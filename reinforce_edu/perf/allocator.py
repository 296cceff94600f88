r"""Page faults on a CPU: keep freed memory in the process so that each step reuses it.

A training step allocates the same large tensors every time: activations, logits (B, T, V),
the weight casts of autocast, the (V, H) gradient of the embedding. glibc's `malloc` serves a
block of 128 KiB or more (a threshold that adapts up to 32 MiB) with its own `mmap` and gives it
back to the OS on `free`; smaller freed memory at the top of the heap is trimmed away too. So the
next step's tensors land on fresh pages, and the first write to each 4 KiB page is a page fault:
the kernel stops the program, zeroes the page and maps it.

    cost per step ≈ (bytes of fresh memory / 4 KiB) × (time per fault)

Measured on the course's 2-core virtual machine by benchmarks/allocator.py (SmolLM2-135M, 16 completions,
one thread): 381 000 faults per step, and a train phase of 3.65 s that takes 2.84 s without them. Three
`mallopt` settings remove them (`keep_freed_memory`):

    M_MMAP_MAX = 0         every block comes from the heap, none from a private mmap
    M_TRIM_THRESHOLD = ∞   freed memory stays in the process, ready for the next step
    M_TOP_PAD = 512 MiB    the heap grows in large strides (fewer, larger growths)

After the first steps the process holds its largest working set and hardly faults (7 300 a step
in that benchmark; tests/test_allocator.py counts them). The price: the process's
resident memory stays at its peak instead of shrinking between steps (+177 MiB of peak RSS in that
benchmark). `measure.release_memory()` (`malloc_trim`) still hands every free page back when asked —
the memory meters of lesson 07 call it before each measurement.

glibc only (Linux); elsewhere `keep_freed_memory` does nothing and returns False. The settings are
process-wide. Used by the trainer on a CPU (`TrainConfig.keep_freed_memory`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource

# mallopt parameter numbers, from glibc's <malloc.h>
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
_NEVER_TRIM = 2 ** 31 - 1  # mallopt takes an int: the largest, ~2 GiB of free memory before a trim
_TOP_PAD = 512 * 2 ** 20

_state = {"on": False}


def glibc():
    """glibc's handle if this process runs on it (it has `mallopt` and `malloc_trim`), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if all(hasattr(libc, f) for f in ("mallopt", "malloc_trim", "gnu_get_libc_version")) else None


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse (see the module docstring). Idempotent.

    Returns True if the settings are in force, False where the C library is not glibc.
    """
    if _state["on"]:
        return True
    libc = glibc()
    if libc is None:
        return False
    ok = all(libc.mallopt(param, value) == 1 for param, value in
             ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, _NEVER_TRIM), (M_TOP_PAD, _TOP_PAD)))
    _state["on"] = ok
    return ok


def page_faults() -> int:
    """Minor page faults of this process so far (`getrusage`): a fresh page's first touch is one."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
