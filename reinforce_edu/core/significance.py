r"""Is one method better than another? Paired differences over seeds, and the seeds a gap needs.

Two methods run with the same n seeds (seed s: the same initial policy, the same sampling
generator) give paired final scores a_s, b_s. Their difference d_s = a_s − b_s removes what the
seed shares between them, and

    mean d̄ = (1/n) Σ_s d_s,    SE(d̄) = sd(d) / √n,    sd(d) = √( Σ_s (d_s − d̄)² / (n − 1) ).

We call a pair **resolved** when |d̄| > z·SE(d̄) (z = 2 by default: about a 95 % two-sided
interval for n ≳ 20; with few seeds the t distribution's wider tails make z = 2 generous).

`mean_se` takes one list of per-seed values; `mean_se_along` does the same for every column of a
tensor at once (e.g. a band ± SE around a mean curve of shape (seeds, steps)), with the same n − 1.

How many seeds would resolve a gap g whose per-seed spread is sd? The SE shrinks like 1/√n, so

    n ≥ (z · sd / g)²        (paired: sd = sd(d); unpaired: sd² = sd_a² + sd_b²).

Taught in notebooks/07_comparison.ipynb; lessons 01–08 use `mean_se` / `mean_se_along` for means ± SE over
seeds, batches or tasks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from torch import Tensor

from reinforce_edu.core._checks import check_tensor


@dataclass(frozen=True)
class PairedDifference:
    """The paired comparison of methods `a` and `b` over the same seeds."""

    a: str
    b: str
    mean: float
    """d̄ = mean over seeds of score(a) − score(b)"""
    se: float
    """SE(d̄) = sd(d) / √n"""
    n: int
    """number of seeds"""
    z: float = 2.0
    """the threshold in standard errors"""

    @property
    def resolved(self) -> bool:
        """|d̄| > z·SE(d̄)."""
        return abs(self.mean) > self.z * self.se

    @property
    def verdict(self) -> str:
        """"a > b", "a < b" or "within noise"."""
        if not self.resolved:
            return "within noise"
        return f"{self.a} > {self.b}" if self.mean > 0 else f"{self.a} < {self.b}"


def _check_scores(x: object, name: str) -> list[float]:
    if isinstance(x, Tensor):
        if x.dim() != 1:
            raise ValueError(f"{name} must be 1-D (one value per seed), got shape {tuple(x.shape)}")
        x = x.double().tolist()
    if isinstance(x, (str, bytes)) or not isinstance(x, Sequence):
        raise TypeError(f"{name} must be a sequence of numbers (one per seed), got {type(x).__name__}")
    out = [float(v) for v in x]
    if len(out) < 2:
        raise ValueError(f"{name} needs at least 2 seeds to estimate a standard error, got {len(out)}")
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} contains NaN or inf")
    return out


def mean_se(x: Sequence[float] | Tensor) -> tuple[float, float]:
    """(mean, standard error of the mean) of independent values, e.g. one per seed: a sequence or a 1-D tensor (n ≥ 2)."""
    v = _check_scores(x, "x")
    n = len(v)
    m = sum(v) / n
    sd = math.sqrt(sum((u - m) ** 2 for u in v) / (n - 1))
    return m, sd / math.sqrt(n)


def mean_se_along(x: Tensor, dim: int = 0) -> tuple[Tensor, Tensor]:
    """(mean, SE of the mean) over axis `dim` of x, e.g. (seeds, steps) -> two (steps,) tensors.

    SE = sd / √n with sd the sample standard deviation (n − 1) and n = x.shape[dim] ≥ 2, as `mean_se`
    gives column by column; computed in x's own dtype."""
    x = check_tensor(x, "x", floating=True, finite=True)
    if isinstance(dim, bool) or not isinstance(dim, int) or not -x.dim() <= dim < x.dim():
        raise ValueError(f"dim must be an axis of x (shape {tuple(x.shape)}), got {dim!r}")
    n = x.shape[dim]
    if n < 2:
        raise ValueError(f"x needs at least 2 values along dim {dim} to estimate a standard error, got {n}")
    return x.mean(dim), x.std(dim) / math.sqrt(n)  # sd with n − 1 (torch's default correction=1)


def paired_difference(a: Sequence[float], b: Sequence[float], names: tuple[str, str] = ("a", "b"),
                      z: float = 2.0) -> PairedDifference:
    """Paired comparison of per-seed scores a_s and b_s (the same seeds, in the same order)."""
    a, b = _check_scores(a, "a"), _check_scores(b, "b")
    if len(a) != len(b):
        raise ValueError(f"a and b must hold one score per seed each, got {len(a)} and {len(b)}")
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not z > 0:
        raise ValueError(f"z must be a positive number, got {z!r}")
    m, se = mean_se([x - y for x, y in zip(a, b)])
    return PairedDifference(names[0], names[1], m, se, len(a), float(z))


def all_pairs(scores: dict[str, Sequence[float]], z: float = 2.0) -> list[PairedDifference]:
    """`paired_difference` of every pair of methods in `scores` (name -> per-seed scores), in dict order."""
    names = list(scores)
    return [paired_difference(scores[a], scores[b], (a, b), z) for i, a in enumerate(names) for b in names[i + 1:]]


def seeds_to_resolve(gap: float, sd: float, z: float = 2.0) -> int:
    """The least n with |gap| > z·sd/√n: n = ⌊(z·sd/gap)²⌋ + 1 (sd: the per-seed spread of the difference)."""
    for name, v in (("gap", gap), ("sd", sd), ("z", z)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    if gap == 0:
        raise ValueError("gap must be non-zero: no number of seeds resolves a zero gap")
    if sd < 0 or z <= 0:
        raise ValueError(f"sd must be >= 0 and z > 0, got sd={sd!r}, z={z!r}")
    return math.floor((z * sd / abs(gap)) ** 2) + 1
