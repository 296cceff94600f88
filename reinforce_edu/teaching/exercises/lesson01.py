"""Lesson 01's exercise: the score-function estimator on a softmax bandit policy."""

from __future__ import annotations

from typing import Callable

import torch

from reinforce_edu.teaching.feedback import _gen, _run

# the library's own versions of the concept: unavailable while the student's function is graded
FORBID_SCORE_FUNCTION = ["reinforce_edu.core.policy_gradient.surrogate_loss",
                         "reinforce_edu.toy.bandit_estimates.reinforce_gradient",
                         "reinforce_edu.toy.bandit_estimates.per_sample_estimates",
                         "reinforce_edu.core.per_sample.per_sample_grads"]


def check_score_function_estimate(fn: Callable, hidden: bool = False) -> None:
    """fn(probs (A,), actions (n,), advantages (n,)) -> (A,): ĝ = (1/n) Σ_i A_i ∇_θ log softmax(θ)_{a_i}."""
    def reference(probs, actions, advantages):
        from reinforce_edu.core.policy_gradient import surrogate_loss
        logits = probs.log().clone().requires_grad_(True)
        logp = torch.log_softmax(logits, -1)[actions]
        (g,) = torch.autograd.grad(-surrogate_loss(logp, advantages), logits)
        return g

    def sum_not_mean(probs, actions, advantages):
        return reference(probs, actions, advantages) * len(actions)

    def onehot_only(probs, actions, advantages):  # ∇ log π_a taken as e_a, forgetting − π
        return (advantages[:, None] * torch.nn.functional.one_hot(actions, probs.shape[0])).mean(0)

    cases = [dict(probs=torch.tensor([0.5, 0.25, 0.25]), actions=torch.tensor([0, 2]), advantages=torch.tensor([1.0, -1.0]))]
    for seed in ([1, 2] if not hidden else [11, 12, 13]):
        g = _gen(seed)
        a = 3 + seed % 4
        probs = torch.softmax(torch.randn(a, generator=g), -1)
        n = 1 + seed % 5
        cases.append(dict(probs=probs, actions=torch.randint(0, a, (n,), generator=g), advantages=torch.randn(n, generator=g)))
    _run("score_function_estimate", fn, reference, cases,
         "lesson 01, 'the score-function estimator' (∇ log softmax(θ)_a = e_a − π); reinforce_edu/core/policy_gradient.py",
         forbid=FORBID_SCORE_FUNCTION,
         mistakes=[("the sum over samples, not the mean (1/n missing)", sum_not_mean),
                   ("∇ log softmax(θ)_a taken as e_a: the − π term is missing", onehot_only)])
