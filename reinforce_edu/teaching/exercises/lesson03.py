"""Lesson 03's exercises: reward-to-go under an EOS mask, and the token-mean aggregation."""

from __future__ import annotations

from typing import Callable

import torch

from reinforce_edu.teaching.exercises._cases import sequence_case, shift_mask
from reinforce_edu.teaching.feedback import _run

FORBID_CREDIT = ["reinforce_edu.core.credit.reward_to_go", "reinforce_edu.core.credit.aggregate",
                 "reinforce_edu.core.credit.aggregation_weights", "reinforce_edu.core.losses.reinforce_loss",
                 "reinforce_edu.llm.ppo.gae"]


def check_reward_to_go(fn: Callable, hidden: bool = False) -> None:
    """fn(rewards (B, T), mask (B, T), gamma) -> (B, T): G_t = Σ_{s≥t} γ^{s−t} m_s r_s, 0 where masked."""
    from reinforce_edu.core.credit import reward_to_go

    def unmasked(rewards, mask, gamma):
        return reward_to_go(rewards, torch.ones_like(mask), gamma)

    cases = [dict(rewards=torch.tensor([[1.0, 0.0, 2.0]]), mask=torch.tensor([[1.0, 1.0, 1.0]]), gamma=1.0),
             dict(rewards=torch.tensor([[1.0, 1.0, 5.0]]), mask=torch.tensor([[1.0, 1.0, 0.0]]), gamma=0.5)]
    for s in ([1] if not hidden else [51, 52]):
        c = sequence_case(s)
        cases.append(dict(rewards=torch.randn(c["B"], c["T"], generator=c["g"]), mask=c["mask"], gamma=0.9))
    _run("reward_to_go", fn, reward_to_go, cases,
         "lesson 03, 'token-level credit: reward-to-go' (tokens after EOS get nothing); reinforce_edu/core/credit.py",
         forbid=FORBID_CREDIT,
         mistakes=[("the mask is ignored: rewards after EOS still count", unmasked),
                   ("the mask is off by one token (shifted one position later)",
                    lambda rewards, mask, gamma: reward_to_go(rewards, shift_mask(mask), gamma)),
                   ("γ applied the wrong way round (the sum runs over s ≤ t)",
                    lambda rewards, mask, gamma: reward_to_go(rewards.flip(1), mask.flip(1), gamma).flip(1) * mask)])


def check_token_mean_loss(fn: Callable, hidden: bool = False) -> None:
    """fn(logp (B, T), advantages (B, T), mask (B, T)) -> scalar: −Σ m·A·logp / Σ m (DAPO's token mean)."""
    from reinforce_edu.core.credit import aggregate

    def with_mode(mode: str) -> Callable:
        return lambda logp, advantages, mask: aggregate(-advantages * logp, mask, mode)

    cases = []
    for s in ([1, 2] if not hidden else [61, 62, 63]):
        c = sequence_case(s)
        logp = -torch.rand(c["B"], c["T"], generator=c["g"]) * 3
        cases.append(dict(logp=logp, advantages=torch.randn(c["B"], c["T"], generator=c["g"]), mask=c["mask"]))
    _run("token_mean_loss", fn, with_mode("token_mean"), cases,
         "lesson 03, 'aggregation modes' (token mean: divide by the number of unmasked tokens in the whole batch); "
         "reinforce_edu/core/credit.py", forbid=FORBID_CREDIT,
         mistakes=[("this is seq_mean (each sequence's mean, then the mean over sequences): the exercise asks for the "
                    "token mean over the whole batch", with_mode("seq_mean")),
                   ("this is the sum aggregation (per-sequence sums averaged over B): divide by Σ m instead",
                    with_mode("sum")),
                   ("the masked tokens count in the denominator (divided by B·T, not Σ m)",
                    lambda logp, advantages, mask: -(mask * advantages * logp).sum() / mask.numel()),
                   ("the masked tokens count in the numerator (the mask is not applied to the losses)",
                    lambda logp, advantages, mask: -(advantages * logp).sum() / mask.sum()),
                   ("the mask is off by one token (shifted one position later)",
                    lambda logp, advantages, mask: with_mode("token_mean")(logp, advantages, shift_mask(mask)))])
