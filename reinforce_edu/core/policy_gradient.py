r"""The score-function (REINFORCE) estimator of ∇J, with any baseline.

Policy-gradient theorem (one step, as in a bandit or a whole sequence):

    ∇_θ J(θ) = E_{a∼π_θ}[ (R(a) − b) ∇_θ log π_θ(a) ]

Estimator from n samples:   ĝ = (1/n) Σ_i A_i ∇_θ log π_θ(a_i),   A_i = R_i − b_i.
It is the gradient of the surrogate loss  L(θ) = −(1/n) Σ_i log π_θ(a_i) · stopgrad(A_i)
(minimised, hence the minus sign): the whole policy loss is one line.

The bandit's exact and per-sample estimates built on it are in `reinforce_edu.toy.bandit_estimates`;
the LLM's in `reinforce_edu.core.losses.reinforce_loss`.

Taught in notebooks/01_bandits_policy_gradient.ipynb (estimator) and
notebooks/02_baselines_and_variance.ipynb (baselines).
"""

from __future__ import annotations

from torch import Tensor

from reinforce_edu.core._checks import check_same_shape, check_tensor


def surrogate_loss(logp: Tensor, advantages: Tensor) -> Tensor:
    """L = −mean(log π(a_i) · A_i), advantages detached. logp, advantages: same shape -> scalar."""
    check_tensor(logp, "logp", floating=True)
    check_tensor(advantages, "advantages", floating=True, finite=True)
    check_same_shape(logp, "logp", advantages, "advantages")
    return -(logp * advantages.detach()).mean()
