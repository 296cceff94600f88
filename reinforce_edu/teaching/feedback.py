"""How an exercise check answers: run the student's function and the library's on the same inputs, compare,
and on a mismatch raise `ExerciseError` naming the input, what was expected, what came back, and which
lesson section to revisit. Used by every checker in `reinforce_edu.teaching.exercises`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor

Mistakes = Sequence[tuple[str, Callable]]  # (what the usual wrong answer does, a function computing it)


class ExerciseError(AssertionError):
    """A wrong answer: the message says what, for which input, and where to look."""


def _fmt(x: Any) -> str:
    if isinstance(x, Tensor):
        x = x.detach()
        if x.numel() > 12:
            return f"tensor of shape {tuple(x.shape)}, first values {[round(v, 4) for v in x.flatten()[:6].tolist()]}"
        return str([round(v, 4) for v in x.flatten().tolist()] if x.dim() <= 1 else
                   [[round(v, 4) for v in row] for row in x.reshape(x.shape[0], -1).tolist()])
    if isinstance(x, float):
        return f"{x:.6g}"
    return repr(x)


def _describe(case: dict) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in case.items() if not callable(v) and not isinstance(v, torch.nn.Module))


def _compare(name: str, got: Any, expected: Any, case: dict, revisit: str, atol: float = 1e-5,
             likely: str = "") -> None:
    hint = f"\n  likely:   {likely}" if likely else ""
    where = f"\n  input:    {_describe(case)}\n  expected: {_fmt(expected)}\n  got:      {_fmt(got)}{hint}\n  revisit:  {revisit}"
    if isinstance(expected, Tensor):
        if not isinstance(got, Tensor):
            raise ExerciseError(f"{name} should return a torch.Tensor, got {type(got).__name__}.{where}")
        if got.shape != expected.shape:
            raise ExerciseError(f"{name} returned shape {tuple(got.shape)}, expected {tuple(expected.shape)}.{where}")
        if not _close(got, expected, atol):
            raise ExerciseError(f"{name} returned the wrong values.{where}")
    else:
        try:
            ok = abs(float(got) - float(expected)) <= atol + 1e-4 * abs(float(expected))
        except (TypeError, ValueError):
            raise ExerciseError(f"{name} should return a number, got {type(got).__name__}.{where}") from None
        if not ok:
            raise ExerciseError(f"{name} returned the wrong value.{where}")


def _close(got: Any, expected: Any, atol: float = 1e-5) -> bool:
    """Same shape and values (tensors or numbers); False rather than an error on anything else."""
    try:
        got, expected = torch.as_tensor(got).detach().double(), torch.as_tensor(expected).detach().double()
        return got.shape == expected.shape and bool(torch.allclose(got, expected, atol=atol, rtol=1e-4))
    except (TypeError, ValueError, RuntimeError):
        return False


def _diagnose(got: Any, case: dict, mistakes: Mistakes, atol: float) -> str:
    """The name of the usual wrong answer that returns exactly `got` on `case` ("" when none does)."""
    for label, wrong in mistakes:
        if _close(got, wrong(**case), atol):
            return label
    return ""





def _call(name: str, fn: Callable, case: dict, revisit: str, forbid: Sequence[str] = ()) -> Any:
    """fn(**case) on copies of the inputs, with the library's `forbid` objects unavailable; a crash says on what."""
    from reinforce_edu.teaching.exercises._integrity import LibraryUnavailableError, library_unavailable

    try:
        with library_unavailable(name, forbid, [fn]):
            return fn(**{k: (v.clone() if isinstance(v, Tensor) else v) for k, v in case.items()})
    except (NotImplementedError, LibraryUnavailableError):
        raise
    except Exception as err:  # the student's code crashed: say on what
        raise ExerciseError(f"{name} raised {type(err).__name__}: {err}\n  input:    {_describe(case)}\n"
                            f"  revisit:  {revisit}") from err


def _run(name: str, fn: Callable, reference: Callable, cases: list[dict], revisit: str, atol: float = 1e-5,
         forbid: Sequence[str] = (), mistakes: Mistakes = ()) -> None:
    """Compare fn with reference on every case. `forbid`: dotted names of the library objects that implement
    the same concept, unavailable while fn runs. `mistakes`: usual wrong answers, named when fn matches one."""
    if not callable(fn):
        raise ExerciseError(f"{name}: pass your function itself, got {type(fn).__name__}")
    for case in cases:
        got = _call(name, fn, case, revisit, forbid)
        expected = reference(**case)
        likely = "" if _close(got, expected, atol) else _diagnose(got, case, mistakes, atol)
        _compare(name, got, expected, case, revisit, atol, likely)
    print(f"✓ {name}: correct on {len(cases)} input(s)")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
