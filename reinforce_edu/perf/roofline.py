r"""How fast a training phase could be: its own matmuls, replayed alone.

A phase that does F FLOPs in t seconds achieves F / t; `measure.matmul_peak` gives this machine's
best, so the phase runs at a share (F / t) / peak of it. How much of the gap is matmul speed and how
much is everything else? Record the phase's matmul kernel calls (shapes, strides, dtypes) and run
exactly those calls back to back on random operands:

    t_mm = replay time,   ceiling = (F / t_mm) / peak

The ceiling is the share the phase would reach if norms, activations, casts, softmax, the optimiser
and every per-op overhead cost nothing. It is an upper bound for an implementation that runs these
matmuls (other shapes, say fused projections, would have another). And for a target share s, the
time left for everything that is not a matmul is F / (s · peak) − t_mm.

Used by benchmarks/train_phase_budget.py; `measure.matmul_share` gives the profiler's view of the
same split. Taught in notebooks/07_comparison.ipynb (section 8), from that script's stored result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from reinforce_edu.perf.measure import best_seconds

__all__ = ["MatmulCall", "record_matmuls", "replay_matmuls"]

_ATEN = torch.ops.aten
_OPS = {_ATEN.mm.default: "mm", _ATEN.bmm.default: "bmm", _ATEN.addmm.default: "addmm",
        _ATEN.baddbmm.default: "baddbmm"}


@dataclass(frozen=True)
class MatmulCall:
    """One matmul kernel call: the op, its arguments (a tensor as (shape, stride, dtype, device)), its FLOPs."""
    op: str  # "mm" | "bmm" | "addmm" | "baddbmm"
    args: tuple
    kwargs: tuple  # sorted (name, value) pairs, e.g. (("alpha", 1), ("beta", 0))
    flops: int  # 2·m·k·n (·b): torch.utils.flop_counter's formula, as in measure.count_flops


def _describe(x):
    return (tuple(x.shape), tuple(x.stride()), x.dtype, x.device) if isinstance(x, torch.Tensor) else x


def _is_tensor(arg) -> bool:
    """Whether a recorded argument describes a tensor (shape, stride, dtype, device)."""
    return isinstance(arg, tuple) and len(arg) == 4 and isinstance(arg[2], torch.dtype)


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[MatmulCall] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        op = _OPS.get(func)
        if op is not None:
            described = tuple(_describe(a) for a in args)
            flops = flop_registry[func.overloadpacket](*args, **kwargs, out_val=None)  # torch's own formula
            self.calls.append(MatmulCall(op, described, tuple(sorted(kwargs.items())), int(flops)))
        return func(*args, **kwargs)


def record_matmuls(fn: Callable[[], object]) -> tuple[list[MatmulCall], object]:
    """Run `fn()` once and record every mm / bmm / addmm / baddbmm it runs, forward and backward, in order.

    Returns (calls, fn's result). Matmuls inside fused kernels (e.g. the attention kernel
    `scaled_dot_product_attention` uses on a CPU) are not separate calls and are not recorded.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    with _Recorder() as rec:
        out = fn()
    return rec.calls, out


def _operand(shape: tuple, stride: tuple, dtype: torch.dtype, device: torch.device, gen: torch.Generator):
    """A random tensor with this exact shape, stride and dtype (a transposed weight stays transposed)."""
    size = 1 + sum((s - 1) * st for s, st in zip(shape, stride)) if all(shape) else 0
    return torch.randn(size, generator=gen).to(device=device, dtype=dtype).as_strided(shape, stride)


def replay_matmuls(calls: list[MatmulCall], repeats: int = 3, copies: int = 4) -> float:
    """Seconds to run `calls` back to back, in order, on random operands of the recorded layout; best of `repeats`.

    Each distinct call gets `copies` operand sets, used in turn, so that a call repeated in every
    layer does not find its operands already in the cache (the real phase reads each layer's own
    weights). One untimed pass first (kernel selection, page faults). CUDA work is synchronised.
    """
    if not isinstance(calls, (list, tuple)) or not all(isinstance(c, MatmulCall) for c in calls):
        raise TypeError("calls must be a list of MatmulCall (from record_matmuls)")
    for name, v in (("repeats", repeats), ("copies", copies)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if not calls:
        return 0.0
    gen = torch.Generator().manual_seed(0)
    pools: dict[MatmulCall, list[list]] = {}
    for c in calls:
        if c not in pools:
            pools[c] = [[_operand(*a, gen) if _is_tensor(a) else a for a in c.args]
                        for _ in range(copies)]
    funcs = {v: k for k, v in _OPS.items()}
    plan = []
    turn: dict[MatmulCall, int] = {}
    for c in calls:  # the operands of each call, chosen before the clock starts
        i = turn.get(c, 0)
        turn[c] = i + 1
        plan.append((funcs[c.op], pools[c][i % copies], dict(c.kwargs)))
    cuda = next((a[3] for c in calls for a in c.args if _is_tensor(a) and a[3].type == "cuda"), None)

    def run() -> None:
        for func, args, kwargs in plan:
            func(*args, **kwargs)
    with torch.no_grad():
        return best_seconds(run, repeats, warmup=1, device=cuda if cuda is not None else "cpu")
