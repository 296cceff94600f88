"""Lesson 05's exercise: the Bradley–Terry loss of a reward model, stable at large margins."""

from __future__ import annotations

from typing import Callable

import torch

from reinforce_edu.teaching.feedback import _gen, _run

FORBID_BT = ["reinforce_edu.llm.reward_head.bradley_terry_loss", "reinforce_edu.llm.reward_model.bradley_terry_loss"]


def check_bradley_terry_loss(fn: Callable, hidden: bool = False) -> None:
    """fn(r_chosen (N,), r_rejected (N,)) -> scalar: mean −log σ(r_chosen − r_rejected)."""
    def reference(r_chosen, r_rejected):
        return torch.nn.functional.softplus(-(r_chosen - r_rejected)).mean()

    cases = [dict(r_chosen=torch.tensor([0.0]), r_rejected=torch.tensor([0.0])),
             dict(r_chosen=torch.tensor([2.0, -1.0]), r_rejected=torch.tensor([0.5, 1.0]))]
    if hidden:
        cases += [dict(r_chosen=torch.tensor([60.0, -60.0]), r_rejected=torch.tensor([-60.0, 60.0])),  # stable?
                  dict(r_chosen=torch.randn(7, generator=_gen(91)), r_rejected=torch.randn(7, generator=_gen(92)))]
    _run("bradley_terry_loss", fn, reference, cases,
         "lesson 05, 'Bradley–Terry' (P(chosen ≻ rejected) = σ(r_c − r_r); use logsigmoid/softplus for large "
         "margins); reinforce_edu/llm/reward_head.py", atol=1e-4, forbid=FORBID_BT,
         mistakes=[("chosen and rejected swapped: the loss should fall as r_chosen − r_rejected grows",
                    lambda r_chosen, r_rejected: reference(r_rejected, r_chosen)),
                   ("the sum over pairs, not the mean", lambda r_chosen, r_rejected: reference(r_chosen, r_rejected) * len(r_chosen))])
