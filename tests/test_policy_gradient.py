"""Oracles for the REINFORCE estimator: its mean against the exact bandit gradient."""

import pytest
import torch
from torch import nn

from reinforce_edu.toy.bandits import make_bandit
from reinforce_edu.core.baselines import BatchMeanBaseline, LeaveOneOutBaseline, NoBaseline
from reinforce_edu.core.per_sample import loop_per_sample_grads, per_sample_grads
from reinforce_edu.core.policy_gradient import surrogate_loss
from reinforce_edu.toy.bandit_estimates import _score_loss, per_sample_estimates, reinforce_gradient
from reinforce_edu.core.variance import estimator_stats
from reinforce_edu.toy.bandit_estimates import baseline_estimates, default_baselines, sample_batches


@pytest.fixture(scope="module")
def setting():
    bandit = make_bandit(n_prompts=2, n_arms=3, noise_std=0.5, seed=0)
    policy = bandit.make_policy(init_std=1.0, seed=1)
    batches = sample_batches(bandit, policy, n_batches=4000, k=2, seed=2)  # n = P·k = 4 per batch
    exact = bandit.exact_gradient(policy.logits).reshape(-1).double()
    return bandit, policy, batches, exact


def _within_4_se(per_batch: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    est = per_batch.double()
    se = est.std(0) / est.shape[0] ** 0.5
    return (est.mean(0) - target).abs() <= 4 * se


@pytest.mark.parametrize("name", ["none", "running_mean", "leave_one_out", "value"])
def test_estimator_mean_within_4_se_of_exact_gradient(setting, name):
    bandit, policy, batches, exact = setting
    _, per_batch = baseline_estimates(policy, batches, default_baselines(bandit.n_prompts)[name])
    assert _within_4_se(per_batch, exact).all()


def test_self_inclusive_batch_mean_shrinks_by_one_minus_one_over_n():
    # one prompt, n = k = 2 samples a batch: the seed's batch mean halves the gradient
    bandit = make_bandit(n_prompts=1, n_arms=3, noise_std=0.1, seed=0)
    policy = bandit.make_policy(init_std=1.0, seed=1)
    batches = sample_batches(bandit, policy, n_batches=4000, k=2, seed=2)
    exact = bandit.exact_gradient(policy.logits).reshape(-1).double()
    n = 2
    _, per_batch = baseline_estimates(policy, batches, BatchMeanBaseline())
    assert _within_4_se(per_batch, (1 - 1 / n) * exact).all()
    stats = estimator_stats(per_batch, exact)  # shrink = ⟨ĝ, ∇J⟩/‖∇J‖², pooled over coordinates
    assert abs(stats["shrink"] - (1 - 1 / n)) < 4 * stats["shrink_se"]
    assert abs(stats["shrink"] - 1) > 4 * stats["shrink_se"]  # the shrink is visible, not noise
    # sample by sample, within one group: batch-mean estimate = (1 − 1/n) · leave-one-out estimate
    _, loo = baseline_estimates(policy, batches, LeaveOneOutBaseline())
    torch.testing.assert_close(per_batch, (1 - 1 / n) * loo)


def test_mean_of_per_sample_estimates_is_the_batch_estimate():
    bandit = make_bandit(seed=4)
    policy = bandit.make_policy(init_std=1.0)
    batch = bandit.sample_batch(policy, k=3, generator=torch.Generator().manual_seed(0))
    per = per_sample_estimates(policy, batch, NoBaseline())
    torch.testing.assert_close(per.mean(0), reinforce_gradient(policy, batch).reshape(-1))


def test_per_sample_grads_vmap_equals_loop_on_bandit():
    bandit = make_bandit(seed=5)
    policy = bandit.make_policy(init_std=1.0)
    batch = bandit.sample_batch(policy, k=4, generator=torch.Generator().manual_seed(0))
    args = (batch.prompts.repeat_interleave(4), batch.actions.reshape(-1), batch.rewards.reshape(-1))
    torch.testing.assert_close(per_sample_grads(policy, _score_loss, *args, params=["logits"]),
                               loop_per_sample_grads(policy, _score_loss, *args, params=["logits"]))


def test_per_sample_grads_vmap_equals_loop_on_mlp_subset():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 4))
    x, y = torch.randn(10, 3), torch.randint(0, 4, (10,))

    def loss(out_fn, xi, yi):
        return nn.functional.cross_entropy(out_fn(xi.unsqueeze(0)), yi.unsqueeze(0))

    for params in (None, ["2.weight", "2.bias"]):
        torch.testing.assert_close(per_sample_grads(net, loss, x, y, params=params),
                                   loop_per_sample_grads(net, loss, x, y, params=params))


def test_surrogate_detaches_advantages():
    logp = torch.zeros(3, requires_grad=True)
    adv = torch.ones(3, requires_grad=True)
    surrogate_loss(logp, adv).backward()
    assert adv.grad is None
    torch.testing.assert_close(logp.grad, torch.full((3,), -1 / 3))


def test_surrogate_bad_input():
    with pytest.raises(ValueError, match="logp and advantages must have the same shape"):
        surrogate_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="advantages contains NaN"):
        surrogate_loss(torch.zeros(2), torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="logp is empty"):
        surrogate_loss(torch.zeros(0), torch.zeros(0))
    with pytest.raises(TypeError, match="logp must be a torch.Tensor"):
        surrogate_loss([0.0], torch.zeros(1))
