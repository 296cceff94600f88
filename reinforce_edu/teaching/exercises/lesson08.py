"""Lesson 08's exercises (verifiable rewards): the unbiased pass@k, DAPO's zero-variance filter, Dr. GRPO's advantages.

Each ``check_*`` runs the student's function on a few inputs beside the library's own and, on a mismatch,
raises `ExerciseError` naming the input, what was expected, what came back and what to revisit. The inputs
are chosen so that the usual wrong answers fail: pass@k as 1 − (1 − c/n)^k (draws with replacement), a
filter that drops every group with a right answer (or keeps groups of equal non-binary rewards), and GRPO's
division by the group's std where Dr. GRPO leaves it out.
Taught in notebooks/08_verifiable_rewards.ipynb.
"""

from __future__ import annotations

from typing import Callable

import torch

from reinforce_edu.teaching.feedback import ExerciseError, _gen, _run

FORBID_PASSK = ["reinforce_edu.core.passk.pass_at_k", "reinforce_edu.core.passk.pass_at_k_per_prompt",
                "reinforce_edu.core.passk.pass_at_k_curve"]
FORBID_FILTER = ["reinforce_edu.core.groups.zero_variance_groups", "reinforce_edu.core.groups.kept_rows"]
FORBID_DR_GRPO = ["reinforce_edu.core.losses.reinforce_loss"]


def check_pass_at_k(fn: Callable, hidden: bool = False) -> None:
    """fn(n, c, k) -> float: the unbiased pass@k = 1 − C(n − c, k)/C(n, k)."""
    from reinforce_edu.core.passk import pass_at_k

    cases = [dict(n=4, c=1, k=2), dict(n=8, c=2, k=4), dict(n=5, c=0, k=3), dict(n=3, c=3, k=1)]
    if hidden:  # n − c < k (every subset passes), k = n, k = 1, large n
        cases += [dict(n=6, c=4, k=3), dict(n=8, c=1, k=8), dict(n=10, c=7, k=1), dict(n=200, c=13, k=50)]
    _run("pass_at_k", lambda **kw: float(fn(**kw)), lambda **kw: pass_at_k(**kw), cases,
         "lesson 08, 'pass@k': the k answers are drawn from the n *without* replacement, "
         "1 − C(n − c, k)/C(n, k); reinforce_edu/core/passk.py", atol=1e-9, forbid=FORBID_PASSK)


def check_zero_variance_filter(fn: Callable, hidden: bool = False) -> None:
    """fn(rewards (P, k)) -> (P,) bool: True for the groups to keep (their k rewards are not all equal)."""
    from reinforce_edu.core.groups import zero_variance_groups

    cases = [dict(rewards=torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))]
    for seed in ([1] if not hidden else [41, 42]):
        cases.append(dict(rewards=(torch.rand(6, 4, generator=_gen(seed)) < 0.5).float()))
    if hidden:  # rewards with a format term: equal but not 0/1, and unequal non-binary ones
        cases.append(dict(rewards=torch.tensor([[0.5, 0.5], [1.5, 1.5], [1.0, 1.5], [0.0, 0.5]])))
    _run("zero_variance_filter", lambda rewards: _as_bool(fn(rewards=rewards)),
         lambda rewards: (~zero_variance_groups(rewards)).float(), cases,
         "lesson 08, 'zero-variance groups': a group is dropped when its k rewards are all equal — all pass "
         "or all fail — and kept otherwise; reinforce_edu/core/groups.py", forbid=FORBID_FILTER)


def _as_bool(keep) -> torch.Tensor:
    if not isinstance(keep, torch.Tensor):
        raise ExerciseError(f"zero_variance_filter should return a (P,) bool tensor, got {type(keep).__name__}")
    return keep.float()


def check_dr_grpo_advantages(fn: Callable, hidden: bool = False) -> None:
    """fn(rewards (P, k)) -> (P, k): Dr. GRPO's A_ij = R_ij − mean_l R_il (no division by the std)."""
    cases = [dict(rewards=torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]))]
    seeds = [1, 2] if not hidden else [51, 52, 53]
    cases += [dict(rewards=(torch.rand(3, 2 + s % 5, generator=_gen(s)) < 0.4).float()) for s in seeds]
    if hidden:
        cases.append(dict(rewards=torch.tensor([[2.0, 2.0, 2.0]])))
    _run("dr_grpo_advantages", fn, lambda rewards: rewards - rewards.mean(dim=1, keepdim=True), cases,
         "lesson 08, 'length bias': Dr. GRPO keeps GRPO's group mean as baseline and drops the division by "
         "the group's std; reinforce_edu/core/losses.py (advantage_scale)", forbid=FORBID_DR_GRPO)
