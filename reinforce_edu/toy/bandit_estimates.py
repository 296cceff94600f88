r"""REINFORCE estimates on the contextual bandit, where the exact gradient is known: the mean estimate,
the per-sample estimates, and every baseline compared on the same batches.

    ĝ = (1/n) Σ_i A_i ∇_θ log π_θ(a_i|x_i),    A_i = R_i − b_i          (core.policy_gradient)
    g_i = A_i ∇_θ log π_θ(a_i|x_i)               one per sample, by torch.func (core.per_sample)

`compare_baselines` scores each baseline's estimates against `ContextualBandit.exact_gradient`
with `core.variance.estimator_stats` (bias, variance, SNR).

Taught in notebooks/01_bandits_policy_gradient.ipynb and notebooks/02_baselines_and_variance.ipynb.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from reinforce_edu.core._checks import check_positive_int
from reinforce_edu.core.baselines import (Baseline, BatchMeanBaseline, LeaveOneOutBaseline, NoBaseline,
                                          RunningMeanBaseline, ValueBaseline)
from reinforce_edu.core.per_sample import per_sample_grads
from reinforce_edu.core.policy_gradient import surrogate_loss
from reinforce_edu.core.variance import estimator_stats
from reinforce_edu.toy.bandits import BanditBatch, ContextualBandit, SoftmaxPolicy


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


def default_baselines(n_prompts: int, decay: float = 0.9, value_lr: float = 0.5) -> dict[str, Baseline]:
    """The five baselines of lesson 02, fresh: none, running mean, batch mean, leave-one-out, value."""
    return {
        "none": NoBaseline(),
        "running_mean": RunningMeanBaseline(decay=decay),
        "batch_mean": BatchMeanBaseline(),
        "leave_one_out": LeaveOneOutBaseline(),
        "value": ValueBaseline(n_prompts=n_prompts, lr=value_lr),
    }


def sample_batches(bandit: ContextualBandit, policy: SoftmaxPolicy, n_batches: int, k: int,
                   seed: int = 0) -> BanditBatch:
    """M batches at once from a fixed policy: prompts (P,), actions and rewards (M, P, k)."""
    check_positive_int(n_batches, "n_batches", minimum=2)
    check_positive_int(k, "k")
    g = torch.Generator().manual_seed(seed)
    prompts = torch.arange(bandit.n_prompts)
    big = prompts.repeat(n_batches)  # (M·P,)
    actions = policy.sample(big, k, generator=g)  # (M·P, k)
    rewards = bandit.rewards(big, actions, generator=g)  # (M·P, k)
    shape = (n_batches, bandit.n_prompts, k)
    return BanditBatch(prompts, actions.reshape(shape), rewards.reshape(shape))


def baseline_estimates(policy: SoftmaxPolicy, batches: BanditBatch, baseline: Baseline,
                       warmup: int = 10) -> tuple[Tensor, Tensor]:
    """Per-sample and per-batch REINFORCE estimates under one baseline.

    batches: actions/rewards (M, P, k). The baseline is called then updated batch by
    batch, as in training (stateful baselines first see `warmup` batches).
    Returns (per_sample (M, n, D), per_batch (M, D)) with n = P·k, D = P·A.
    """
    m, p, k = batches.rewards.shape
    for i in range(min(warmup, m)):
        baseline.update(batches.rewards[i], batches.prompts)
    adv = torch.empty_like(batches.rewards)  # (M, P, k)
    for i in range(m):
        adv[i] = batches.rewards[i] - baseline(batches.rewards[i], batches.prompts)
        baseline.update(batches.rewards[i], batches.prompts)
    prompts = batches.prompts.repeat_interleave(k).repeat(m)  # (M·n,)
    g = per_sample_grads(policy, _score_loss, prompts, batches.actions.reshape(-1), adv.detach().reshape(-1),
                         params=["logits"])  # (M·n, D)
    g = g.reshape(m, p * k, -1)  # (M, n, D)
    return g, g.mean(1)


def compare_baselines(bandit: ContextualBandit, policy: SoftmaxPolicy,
                      baselines: Mapping[str, Baseline] | None = None, *, k: int = 4,
                      n_batches: int = 500, seed: int = 0, warmup: int = 10) -> list[dict]:
    """Bias, variance and SNR of the REINFORCE estimate for each baseline, on the same samples.

    Every baseline sees the *same* M batches (common random numbers), so differences
    come from the baseline alone. Returns one dict per baseline (see `estimator_stats`),
    plus `per_sample_variance` (tr Cov of a single g_i).
    """
    baselines = default_baselines(bandit.n_prompts) if baselines is None else baselines
    if len(baselines) == 0:
        raise ValueError("baselines is empty; pass a mapping name -> Baseline")
    batches = sample_batches(bandit, policy, n_batches, k, seed)
    exact = bandit.exact_gradient(policy.logits).reshape(-1)
    rows = []
    for name, baseline in baselines.items():
        per_sample, per_batch = baseline_estimates(policy, batches, baseline, warmup=warmup)
        stats = estimator_stats(per_batch, exact)
        stats["per_sample_variance"] = float(per_sample.reshape(-1, per_sample.shape[-1]).double().var(0).sum())
        rows.append({"baseline": name, **stats})
    return rows
