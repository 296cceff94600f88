"""Lesson 07's exercises: GRPO's group normalisation, and PPO's clipped surrogate (value and gradient)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from reinforce_edu.teaching.exercises._cases import ratio_case
from reinforce_edu.teaching.feedback import ExerciseError, _call, _compare, _gen, _run

FORBID_GRPO = ["reinforce_edu.core.losses.reinforce_loss", "reinforce_edu.llm.ppo.whiten"]
FORBID_PPO = ["reinforce_edu.llm.ppo.clipped_surrogate", "reinforce_edu.llm.ppo.ppo_update",
              "reinforce_edu.core.credit.aggregate", "reinforce_edu.core.credit.aggregation_weights"]


def _grpo(rewards: Tensor, k: int, eps: float = 1e-4, unbiased: bool = True) -> Tensor:
    grouped = rewards.view(-1, k)  # (P, k)
    mean, std = grouped.mean(1, keepdim=True), grouped.std(1, keepdim=True, unbiased=unbiased)
    return ((grouped - mean) / (std + eps)).reshape(-1)  # (B,)


def check_grpo_advantages(fn: Callable, hidden: bool = False) -> None:
    """fn(rewards (B,), k, eps) -> (B,): A_ij = (R_ij − mean_i) / (std_i + eps), std unbiased, per group of k."""
    cases = [dict(rewards=torch.tensor([1.0, 0.0, 0.5, 0.5]), k=2, eps=1e-4),  # the second group has no spread
             dict(rewards=torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0]), k=3, eps=1e-4)]
    for s in ([1] if not hidden else [141, 142]):
        k = 2 + s % 3
        cases.append(dict(rewards=torch.randn(3 * k, generator=_gen(s)), k=k, eps=1e-4))
    _run("grpo_advantages", fn, _grpo, cases,
         "lesson 07, 'GRPO: divide by the group's spread' (A = (R − group mean)/(group std + ε), the unbiased std "
         "of the k returns); reinforce_edu/core/losses.py (advantage_scale='group_std')", atol=1e-4,
         forbid=FORBID_GRPO,
         mistakes=[("the biased std (divided by k): GRPO uses the unbiased one (k − 1)",
                    lambda rewards, k, eps: _grpo(rewards, k, eps, unbiased=False)),
                   ("normalised over the whole batch, not within each prompt's group",
                    lambda rewards, k, eps: _grpo(rewards, rewards.numel(), eps)),
                   ("not divided by the std: this is the group-mean baseline alone",
                    lambda rewards, k, eps: (rewards.view(-1, k) - rewards.view(-1, k).mean(1, keepdim=True)).reshape(-1))])


def _ppo_reference(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, clip_range: float,
                   aggregation: str = "token_mean", pessimistic: bool = True) -> Tensor:
    from reinforce_edu.core.credit import aggregate

    ratio = torch.exp(torch.where(mask > 0, logp - old_logp.detach(), torch.zeros((), dtype=logp.dtype)))  # (B, T)
    adv = advantages.detach()
    a, b = -adv * ratio, -adv * ratio.clamp(1 - clip_range, 1 + clip_range)
    return aggregate(torch.maximum(a, b) if pessimistic else torch.minimum(a, b), mask, aggregation)


def check_ppo_clip_loss(fn: Callable, hidden: bool = False) -> None:
    """fn(logp (B, T) with grad, old_logp, advantages, mask (B, T), clip_range) -> scalar: PPO's clipped surrogate.

    L = Σ_t m_t max(−ρ_t Â_t, −clip(ρ_t, 1 ± ε) Â_t) / Σ m (token mean), ρ_t = exp(logp − old_logp).
    Checked: the value, and the gradient w.r.t. logp (zero where the clip binds, −Â ρ / Σm elsewhere).
    """
    revisit = ("lesson 07, 'PPO: the clipped ratio' (the pessimistic max of the two negated terms; old_logp and Â "
               "are constants; token mean); reinforce_edu/llm/ppo.py")
    cases = []
    for s in ([1, 2] if not hidden else [151, 152]):
        c = ratio_case(s, B=3, T=6, spread=0.4, pad=5.0)  # ratios on both sides of 1 ± 0.2
        cases.append(dict(logp=c["logp"], old_logp=c["old_logp"], advantages=torch.randn(3, 6, generator=c["g"]),
                          mask=c["mask"], clip_range=0.2))
    mistakes = [("min of the two negated terms: the optimistic bound (PPO takes the pessimistic max of −ρÂ, i.e. min of ρÂ)",
                 lambda **c: _ppo_reference(**c, pessimistic=False)),
                ("this is seq_mean (each sequence's mean, then the mean over sequences): the exercise asks for the "
                 "token mean", lambda **c: _ppo_reference(**c, aggregation="seq_mean")),
                ("the padding counts: apply the mask", lambda **c: _ppo_reference(**{**c, "mask": torch.ones_like(c["mask"])})),
                ("no clipping at all (the plain importance-weighted loss)", lambda **c: _ppo_reference(**{**c, "clip_range": 1e9}))]
    _run("ppo_clip_loss", fn, _ppo_reference, cases, revisit, forbid=FORBID_PPO, mistakes=mistakes)
    for case in cases:
        for same in (False, True):  # same: old_logp IS logp (first epoch), which catches an undetached old_logp
            logp = case["logp"].clone().requires_grad_(True)
            loss = _call("ppo_clip_loss", fn, dict(case, logp=logp, old_logp=logp if same else case["old_logp"]),
                         revisit, FORBID_PPO)
            if not isinstance(loss, Tensor) or not loss.requires_grad:
                raise ExerciseError(f"ppo_clip_loss must return a scalar tensor with a gradient w.r.t. logp.\n  revisit:  {revisit}")
            (got,) = torch.autograd.grad(loss, logp)
            ref_logp = case["logp"].clone().requires_grad_(True)
            ref_case = dict(case, logp=ref_logp, old_logp=ref_logp.detach() if same else case["old_logp"])
            (expected,) = torch.autograd.grad(_ppo_reference(**ref_case), ref_logp)
            label = "ppo_clip_loss (its gradient w.r.t. logp" + (" when old_logp is logp itself: detach old_logp)" if same else ")")
            _compare(label, got, expected, case, revisit)
    print("✓ ppo_clip_loss: gradient matches too, clipped and unclipped tokens, and with old_logp = logp")
