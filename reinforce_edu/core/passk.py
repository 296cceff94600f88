r"""pass@k: the chance that at least one of k answers is right, estimated without bias from n ≥ k samples.

For a prompt whose answers are right with probability p, pass@k = 1 − (1 − p)^k. With n samples of
which c are right, the plug-in 1 − (1 − c/n)^k is *biased*: (1 − p̂)^k is convex in p̂, so by Jensen
E[(1 − p̂)^k] ≥ (1 − p)^k and the plug-in underestimates pass@k (it draws the k answers *with*
replacement). Chen et al. (2021, "Evaluating Large Language Models Trained on Code", eq. 1) draw them
*without* replacement from the n:

    pass@k = 1 − C(n − c, k) / C(n, k)        (the chance that a random k-subset holds a right answer)

unbiased for every k ≤ n, since E over n samples of [1 − C(n−c, k)/C(n, k)] = 1 − (1 − p)^k. The ratio of
binomials is computed as a product, stable for any n:

    C(n − c, k) / C(n, k) = Π_{i = n−c+1}^{n} (1 − k / i)      (= 0 when n − c < k)

Over P prompts the reported figure is the mean over prompts, with SE = std_i / √P. A change after training,
over S seeds that share the prompts and the "before" samples (`pass_at_k_change`): d_si = pass@k_si(after) −
pass@k_i(before), reported as the mean of d, with two standard errors — over prompts (of the seed-averaged
d̄_i: which tasks happened to be drawn) and over seeds (of the per-seed means d̄_s: how runs differ).
Taught in notebooks/08_verifiable_rewards.ipynb.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from reinforce_edu.core._checks import check_positive_int, check_tensor
from reinforce_edu.core.significance import mean_se_along


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one prompt from n samples with c correct: 1 − C(n − c, k)/C(n, k)."""
    n, k = check_positive_int(n, "n"), check_positive_int(k, "k")
    c = check_positive_int(c, "c", minimum=0)
    if c > n:
        raise ValueError(f"c (correct samples) must be <= n={n}, got {c}")
    if k > n:
        raise ValueError(f"k={k} must be <= n={n}: pass@k needs at least k samples per prompt")
    if n - c < k:  # every k-subset holds a right answer
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def _check_correct(correct: object) -> Tensor:
    check_tensor(correct, "correct", ndim=2)
    if correct.is_floating_point() and not torch.isfinite(correct).all():
        raise ValueError("correct contains NaN or inf values")
    if not ((correct == 0) | (correct == 1)).all():
        raise ValueError("correct must hold only 0/1 (or False/True) values: one per sample, right or wrong")
    return correct


def pass_at_k_per_prompt(correct: Tensor, k: int) -> Tensor:
    """correct: (P, n) 0/1 per sample -> (P,) unbiased pass@k of each prompt (float64)."""
    correct = _check_correct(correct)
    n = correct.shape[1]
    counts = correct.sum(dim=1).long().tolist()  # (P,) c_i
    return torch.tensor([pass_at_k(n, c, k) for c in counts], dtype=torch.float64)


def _se(x: Tensor) -> float:
    """SE of the mean of a 1-D tensor (core.significance), NaN for a single value."""
    return float(mean_se_along(x, 0)[1]) if len(x) > 1 else float("nan")


def pass_at_k_curve(correct: Tensor, ks: list[int] | None = None) -> dict[int, tuple[float, float]]:
    """{k: (mean over prompts of pass@k, its SE std/√P)} for k in `ks` (default 1 … n). correct: (P, n)."""
    correct = _check_correct(correct)
    n = correct.shape[1]
    out = {}
    for k in (ks if ks is not None else range(1, n + 1)):
        v = pass_at_k_per_prompt(correct, k)  # (P,)
        out[k] = (float(v.mean()), _se(v))
    return out


def pass_at_k_change(after: list[Tensor] | Tensor, before: Tensor, k: int) -> dict:
    """pass@k after minus before, paired over the same prompts, for S runs (seeds) on the same P prompts.

    after: S tensors (P, n) 0/1, or one (S, P, n); before: (P, n) 0/1. Returns {"mean", "se_prompts" (SE over
    prompts of the seed-averaged differences), "se_seeds" (SE over seeds of the per-seed means; NaN for one
    seed), "per_seed": [S means], "per_prompt": [P seed-averaged differences]} (the paired input of a comparison
    between methods or between k's on the same prompts).
    """
    runs = list(after) if not isinstance(after, Tensor) or after.ndim == 3 else [after]
    if not runs:
        raise ValueError("after must hold at least one (P, n) correctness matrix")
    base = pass_at_k_per_prompt(before, k)  # (P,)
    d = []
    for i, a in enumerate(runs):
        if not isinstance(a, Tensor) or a.shape != before.shape:
            raise ValueError(f"after[{i}] must be a tensor of the shape of before {tuple(before.shape)}, "
                             f"got {tuple(a.shape) if isinstance(a, Tensor) else type(a).__name__}")
        d.append(pass_at_k_per_prompt(a, k) - base)
    d = torch.stack(d)  # (S, P)
    per_prompt, per_seed = d.mean(0), d.mean(1)  # (P,), (S,)
    return {"mean": float(d.mean()), "se_prompts": _se(per_prompt), "se_seeds": _se(per_seed),
            "per_seed": per_seed.tolist(), "per_prompt": per_prompt.tolist()}
