"""Lesson 06's exercises: completion log-probs with an EOS mask, importance weights for a reused batch."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from reinforce_edu.teaching.exercises._cases import ratio_case, sequence_case, shift_mask
from reinforce_edu.teaching.feedback import ExerciseError, _call, _compare, _gen, _run

FORBID_LOGPROBS = ["reinforce_edu.llm.logprobs.token_logprobs", "reinforce_edu.llm.logprobs.completion_logprobs"]
FORBID_IMPORTANCE = ["reinforce_edu.llm.ppo.clipped_surrogate", "reinforce_edu.core.losses.reinforce_loss"]


def check_completion_logprobs(fn: Callable, hidden: bool = False) -> None:
    """fn(logits (B, L, V), input_ids (B, L), prompt_length, completion_mask (B, T)) -> (B, T).

    Token t of the completion sits at position prompt_length + t and is predicted by the
    logits at position prompt_length + t − 1. Masked positions (after EOS) must be 0.
    """
    def reference(logits, input_ids, prompt_length, completion_mask, shift=1):
        logp = torch.log_softmax(logits[:, prompt_length - shift:logits.shape[1] - shift].double(), -1)  # (B, T, V)
        tokens = input_ids[:, prompt_length:]  # (B, T)
        return (logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) * completion_mask).float()

    cases = []
    for s in ([1, 2] if not hidden else [101, 102]):
        g = _gen(s)
        B, P, T, V = 3, 2 + s % 3, 4, 11
        c = sequence_case(s, B=B, T=T)
        cases.append(dict(logits=3 * torch.randn(B, P + T, V, generator=g), input_ids=torch.randint(0, V, (B, P + T), generator=g),
                          prompt_length=P, completion_mask=c["mask"]))
    _run("completion_logprobs", fn, reference, cases,
         "lesson 06, 'log-probs of the completion' (shift by one; gather − logsumexp; zero after EOS); "
         "reinforce_edu/llm/logprobs.py", atol=1e-4, forbid=FORBID_LOGPROBS,
         mistakes=[("no shift: the logits at position p are those that predict token p + 1",
                    lambda **c: reference(**c, shift=0)),
                   ("not zero after EOS: multiply by completion_mask",
                    lambda **c: reference(**{**c, "completion_mask": torch.ones_like(c["completion_mask"])})),
                   ("the mask is off by one token (shifted one position later)",
                    lambda **c: reference(**{**c, "completion_mask": shift_mask(c["completion_mask"])}))])


def _importance_reference(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor) -> Tensor:
    """−(1/B) Σ_i w_i A_i,  w_i = exp(Σ_t m_it (logp_it − old_logp_it)), old_logp and A constants."""
    log_w = torch.where(mask > 0, logp - old_logp.detach(), torch.zeros((), dtype=logp.dtype)).sum(1)  # (B,)
    return -(torch.exp(log_w) * advantages.detach()).mean()


def check_importance_weights(fn: Callable, hidden: bool = False) -> None:
    """fn(logp (B, T) with grad, old_logp (B, T), advantages (B,), mask (B, T)) -> scalar loss −mean_i(w_i A_i).

    Checked: the value, and the gradient w.r.t. logp; in one case old_logp IS logp (the first step on
    a fresh batch, θ = θ_old): the weight is 1 and the gradient must be REINFORCE's, which fails when
    old_logp is not detached (the ratio is then constant and the gradient vanishes).
    """
    revisit = ("lesson 06, 'reusing a batch' (w_i = π_θ(y_i)/π_old(y_i) = exp Σ_t m_it (log π_θ − log π_old), "
               "π_old constant; at θ = θ_old it is REINFORCE); reinforce_edu/llm/ppo.py")
    cases = []
    for s in ([1, 2] if not hidden else [131, 132]):
        c = ratio_case(s, B=4, T=5, spread=0.3, pad=-40.0)
        cases.append(dict(logp=c["logp"], old_logp=c["old_logp"], advantages=torch.randn(4, generator=c["g"]),
                          mask=c["mask"]))
    mistakes = [("the padding counts: sum the log-ratio over unmasked tokens only",
                 lambda logp, old_logp, advantages, mask: _importance_reference(logp, old_logp, advantages, torch.ones_like(mask))),
                ("a per-token weight averaged over tokens, not the sequence's weight (the product over its tokens)",
                 lambda logp, old_logp, advantages, mask: -((torch.exp(logp - old_logp) * mask).sum(1) / mask.sum(1)
                                                            * advantages).mean()),
                ("the ratio inverted: π_θ / π_old, not π_old / π_θ",
                 lambda logp, old_logp, advantages, mask: _importance_reference(old_logp, logp, advantages, mask))]
    _run("importance_weights", fn, _importance_reference, cases, revisit, forbid=FORBID_IMPORTANCE, mistakes=mistakes)
    for case in cases + [None]:
        if case is None:  # θ = θ_old: the very same tensor as logp and old_logp
            logp = cases[0]["logp"].clone().requires_grad_(True)
            mine, theirs = dict(cases[0], logp=logp, old_logp=logp), dict(cases[0])
        else:
            logp = case["logp"].clone().requires_grad_(True)
            mine, theirs = dict(case, logp=logp), case
        loss = _call("importance_weights", fn, mine, revisit, FORBID_IMPORTANCE)
        if not isinstance(loss, Tensor) or not loss.requires_grad:
            raise ExerciseError(f"importance_weights must return a scalar tensor with a gradient w.r.t. logp.\n  revisit:  {revisit}")
        (got,) = torch.autograd.grad(loss, logp)
        expected_logp = theirs["logp"].clone().requires_grad_(True)
        ref_old = expected_logp.detach() if case is None else theirs["old_logp"]
        (expected,) = torch.autograd.grad(_importance_reference(expected_logp, ref_old, theirs["advantages"], theirs["mask"]),
                                          expected_logp)
        label = ("importance_weights (gradient w.r.t. logp when old_logp is logp itself: detach old_logp)"
                 if case is None else "importance_weights (its gradient w.r.t. logp)")
        _compare(label, got, expected, theirs, revisit)
    print("✓ importance_weights: gradient matches too, and at θ = θ_old it is REINFORCE's")
