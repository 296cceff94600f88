"""Lesson 04's exercises: the k3 estimator of KL, and the corrected reinforce_loss (value and gradient)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from reinforce_edu.teaching.exercises._cases import sequence_case
from reinforce_edu.teaching.feedback import ExerciseError, _call, _compare, _gen, _run

FORBID_KL = ["reinforce_edu.core.kl.kl_estimate"]
FORBID_LOSS = ["reinforce_edu.core.losses.reinforce_loss", "reinforce_edu.core.losses.seed_reinforce_loss",
               "reinforce_edu.core.baselines.LeaveOneOutBaseline", "reinforce_edu.core.baselines.advantages",
               "reinforce_edu.core.kl.kl_estimate", "reinforce_edu.core.credit.aggregate",
               "reinforce_edu.core.policy_gradient.surrogate_loss"]


def check_k3(fn: Callable, hidden: bool = False) -> None:
    """fn(logp (B, T), ref_logp (B, T)) -> (B, T): k3 = (e^ρ − 1) − ρ, ρ = ref_logp − logp."""
    from reinforce_edu.core.kl import kl_estimate

    cases = [dict(logp=torch.tensor([[-1.0, -0.5]]), ref_logp=torch.tensor([[-1.0, -2.0]]))]
    for s in ([1] if not hidden else [71, 72]):
        g = _gen(s)
        cases.append(dict(logp=-3 * torch.rand(2, 4, generator=g), ref_logp=-3 * torch.rand(2, 4, generator=g)))
    _run("k3", fn, lambda logp, ref_logp: kl_estimate(logp, ref_logp, "k3"), cases,
         "lesson 04, 'three estimators of KL' (k3 is unbiased and never negative); reinforce_edu/core/kl.py",
         forbid=FORBID_KL,
         mistakes=[("ρ has the wrong sign: ρ = log π_ref − log π_θ", lambda logp, ref_logp: kl_estimate(ref_logp, logp, "k3")),
                   ("this is k1 (log π_θ − log π_ref)", lambda logp, ref_logp: kl_estimate(logp, ref_logp, "k1")),
                   ("this is k2 (½ ρ²)", lambda logp, ref_logp: kl_estimate(logp, ref_logp, "k2"))])


def check_reinforce_loss(fn: Callable, hidden: bool = False) -> None:
    """fn(logp (B, T) with grad, ref_logp (B, T), rewards (B,), mask (B, T), beta, k) -> scalar loss.

    Checked: the loss value AND its gradient with respect to logp (where the seed's faults show).
    Configuration: KL (k1) folded into the return, detached; leave-one-out baseline over groups
    of k; summed over tokens, then the mean over the batch (aggregation "sum", lesson 03).
    """
    from reinforce_edu.core.baselines import LeaveOneOutBaseline
    from reinforce_edu.core.losses import reinforce_loss

    def ref_value(logp, ref_logp, rewards, mask, beta, k):
        return reinforce_loss(logp, rewards, mask, ref_logp=ref_logp, beta=beta, kl_estimator="k1",
                              kl_placement="reward", baseline=LeaveOneOutBaseline(), group_size=k,
                              aggregation="sum").loss

    def grad_of(f: Callable, case: dict, forbid: list[str]) -> Tensor:
        logp = case["logp"].clone().requires_grad_(True)
        loss = _call("reinforce_loss", f, {**case, "logp": logp}, revisit, forbid)
        if not isinstance(loss, Tensor) or not loss.requires_grad:
            raise ExerciseError("reinforce_loss must return a scalar tensor that depends on logp (with a gradient)")
        (g,) = torch.autograd.grad(loss, logp)
        return g

    cases = []
    for s in ([1, 2] if not hidden else [81, 82]):
        c = sequence_case(s, B=4, T=4)
        cases.append(dict(logp=-2 * torch.rand(4, 4, generator=c["g"]), ref_logp=-2 * torch.rand(4, 4, generator=c["g"]),
                          rewards=torch.randn(4, generator=c["g"]), mask=c["mask"], beta=0.1 * s % 0.5 + 0.05, k=2))
    revisit = ("lesson 04, 'the seed's faults, corrected' (detach the KL inside the return; leave-one-out, not the "
               "self-inclusive mean); reinforce_edu/core/losses.py")
    _run("reinforce_loss", fn, ref_value, cases, revisit, forbid=FORBID_LOSS)
    for case in cases:
        _compare("reinforce_loss (its gradient w.r.t. logp)", grad_of(fn, case, FORBID_LOSS), grad_of(ref_value, case, []),
                 case, revisit)
    print("✓ reinforce_loss: gradient matches too")
