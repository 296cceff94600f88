r"""The score-function (REINFORCE) estimator of ∇J, with any baseline.

Policy-gradient theorem (one step, as in a bandit or a whole sequence):

    ∇_θ J(θ) = E_{a∼π_θ}[ (R(a) − b) ∇_θ log π_θ(a) ]

Estimator from n samples:   ĝ = (1/n) Σ_i A_i ∇_θ log π_θ(a_i),   A_i = R_i − b_i.
It is the gradient of the surrogate loss  L(θ) = −(1/n) Σ_i log π_θ(a_i) · stopgrad(A_i)
(minimised, hence the minus sign): the whole policy loss is one line.

Taught in notebooks/01_bandits_policy_gradient.ipynb (estimator) and
notebooks/02_baselines_and_variance.ipynb (baselines).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_same_shape, check_tensor
from .bandits import BanditBatch, SoftmaxPolicy
from .baselines import Baseline, NoBaseline
from .per_sample import per_sample_grads


def surrogate_loss(logp: Tensor, advantages: Tensor) -> Tensor:
    """L = −mean(log π(a_i) · A_i), advantages detached. logp, advantages: same shape -> scalar."""
    check_tensor(logp, "logp", floating=True)
    check_tensor(advantages, "advantages", floating=True, finite=True)
    check_same_shape(logp, "logp", advantages, "advantages")
    return -(logp * advantages.detach()).mean()


def batch_advantages(batch: BanditBatch, baseline: Baseline | None = None) -> Tensor:
    """A_ij = R_ij − b_ij for a bandit batch: (P, k). The baseline is *not* updated here."""
    baseline = baseline if baseline is not None else NoBaseline()
    return (batch.rewards - baseline(batch.rewards, batch.prompts)).detach()


def reinforce_gradient(policy: SoftmaxPolicy, batch: BanditBatch, baseline: Baseline | None = None) -> Tensor:
    """ĝ = (1/n) Σ_i A_i ∇_θ log π_θ(a_i|x_i): the mean estimate of ∇J (ascent direction). -> (P, A)."""
    adv = batch_advantages(batch, baseline)  # (P, k)
    logp = policy.log_prob(batch.prompts, batch.actions)  # (P, k)
    (g,) = torch.autograd.grad(-surrogate_loss(logp, adv), [policy.logits])
    return g  # (P, A), same shape as θ


def _score_loss(out_fn, prompt: Tensor, action: Tensor, adv: Tensor) -> Tensor:
    """A_i · log π_θ(a_i|x_i) for ONE sample (its gradient is the per-sample estimate g_i)."""
    logits = out_fn(prompt.unsqueeze(0))[0]  # (A,)
    return adv * torch.log_softmax(logits, dim=-1).gather(0, action.unsqueeze(0))[0]


def per_sample_estimates(policy: SoftmaxPolicy, batch: BanditBatch, baseline: Baseline | None = None) -> Tensor:
    """The n per-sample estimates g_i = A_i ∇_θ log π_θ(a_i|x_i), flattened: (n, D), n = P·k, D = P·A.

    Their mean is `reinforce_gradient(...)` flattened.
    """
    adv = batch_advantages(batch, baseline)  # (P, k)
    k = batch.actions.shape[1]
    prompts = batch.prompts.repeat_interleave(k)  # (n,)
    return per_sample_grads(policy, _score_loss, prompts, batch.actions.reshape(-1), adv.reshape(-1),
                            params=["logits"])  # (n, D)
