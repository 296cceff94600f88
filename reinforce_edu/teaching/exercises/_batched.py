"""Does a function run batched? Count the torch calls it makes at two batch sizes.

A vectorised answer (`torch.func.vmap` over `grad`, or a closed form) makes the same number of torch
calls whatever the number of samples n; a Python loop over the samples makes a number that grows with
n. `torch.overrides.TorchFunctionMode` sees every torch call, including those inside vmap's trace.
"""

from __future__ import annotations

from typing import Callable

from torch.overrides import TorchFunctionMode


class _CountCalls(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def torch_calls(fn: Callable, **inputs) -> int:
    """How many torch functions `fn(**inputs)` calls."""
    with _CountCalls() as counter:
        fn(**inputs)
    return counter.calls


def grows_with_batch(fn: Callable, small: dict, large: dict, n_small: int, n_large: int) -> tuple[bool, int, int]:
    """(True when the torch calls grow by at least half a call per extra sample, calls at n_small, at n_large)."""
    a, b = torch_calls(fn, **small), torch_calls(fn, **large)
    return (b - a) >= 0.5 * (n_large - n_small), a, b
