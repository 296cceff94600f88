"""Input checks shared by the library: clear errors that name the argument.

Every public function validates what it is given, so that bad input fails loudly
with a `TypeError` / `ValueError` instead of producing a silent wrong result.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_tensor(x: object, name: str, *, ndim: int | tuple[int, ...] | None = None,
                 floating: bool = False, integer: bool = False,
                 finite: bool = False, nonempty: bool = True) -> Tensor:
    """Validate `x` and return it.

    Raises `TypeError` if `x` is not a tensor or has the wrong kind of dtype, and
    `ValueError` for the wrong number of dimensions, an empty tensor, or NaN/inf.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if integer and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer tensor, got dtype {x.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if x.dim() not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimension(s), "
                             f"got shape {tuple(x.shape)}")
    if nonempty and x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); need at least one element")
    if finite and x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return x


def check_same_shape(a: Tensor, a_name: str, b: Tensor, b_name: str) -> None:
    """Raise `ValueError` unless `a` and `b` have the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"{a_name} and {b_name} must have the same shape, "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")


def check_positive_int(x: object, name: str, minimum: int = 1) -> int:
    """Raise unless `x` is an int >= `minimum`."""
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(f"{name} must be an int, got {type(x).__name__}")
    if x < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {x}")
    return x


def check_open_unit(x: object, name: str) -> float:
    """Raise unless `x` is a real number strictly between 0 and 1."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{name} must be a float in (0, 1), got {type(x).__name__}")
    if not 0.0 < float(x) < 1.0:
        raise ValueError(f"{name} must be in the open interval (0, 1), got {x}")
    return float(x)


def check_nonnegative(x: object, name: str) -> float:
    """Raise unless `x` is a finite real number >= 0."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{name} must be a non-negative float, got {type(x).__name__}")
    if not (float(x) >= 0.0 and float(x) < float("inf")):
        raise ValueError(f"{name} must be a finite number >= 0, got {x}")
    return float(x)


def check_choice(x: object, name: str, choices: tuple[str, ...]) -> str:
    """Raise unless `x` is one of `choices`."""
    if not isinstance(x, str):
        raise TypeError(f"{name} must be a str, one of {choices}, got {type(x).__name__}")
    if x not in choices:
        raise ValueError(f"unknown {name} {x!r}; expected one of {choices}")
    return x
