"""Oracles for the contextual bandit: exact gradient vs autograd and finite differences."""

import pytest
import torch

from reinforce_edu.toy.bandits import ContextualBandit, SoftmaxPolicy, make_bandit


def test_exact_gradient_matches_autograd():
    bandit = make_bandit(n_prompts=3, n_arms=4, seed=1)
    logits = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    bandit.objective(logits).backward()
    torch.testing.assert_close(bandit.exact_gradient(logits), logits.grad)


def test_exact_gradient_matches_finite_differences():
    bandit = ContextualBandit(make_bandit(n_prompts=3, n_arms=4, seed=2).mean_rewards.double())
    logits = torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = bandit.exact_gradient(logits)
    eps = 1e-6
    fd = torch.zeros_like(logits)
    for i in range(3):
        for j in range(4):
            e = torch.zeros_like(logits)
            e[i, j] = eps
            fd[i, j] = (bandit.objective(logits + e) - bandit.objective(logits - e)) / (2 * eps)
    assert (fd - exact).abs().max() < 1e-8


def test_prompts_sit_at_different_levels():
    bandit = make_bandit(n_prompts=4, n_arms=5, seed=0)
    levels = bandit.mean_rewards.mean(dim=1)
    assert levels.max() - levels.min() > 0.5  # per-prompt and global baselines differ


def test_offset_moves_rewards_not_gradient():
    a = make_bandit(seed=3)
    b = make_bandit(seed=3, offset=10.0)
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.exact_gradient(logits), b.exact_gradient(logits), atol=1e-6, rtol=1e-5)
    assert float(b.objective(logits) - a.objective(logits)) == pytest.approx(10.0, abs=1e-5)


def test_sampling_frequencies_match_policy():
    bandit = make_bandit(n_prompts=2, n_arms=3, noise_std=0.0)
    policy = bandit.make_policy(init_std=1.0, seed=4)
    batch = bandit.sample_batch(policy, k=20000, generator=torch.Generator().manual_seed(0))
    probs = policy.probs().detach()
    for x in range(2):
        freq = torch.bincount(batch.actions[x], minlength=3).double() / 20000
        se = (probs[x] * (1 - probs[x]) / 20000).sqrt().double()
        assert ((freq - probs[x].double()).abs() < 4 * se).all()
    torch.testing.assert_close(batch.rewards, bandit.mean_rewards[batch.prompts.unsqueeze(1), batch.actions])


def test_log_prob_is_log_softmax_row():
    policy = SoftmaxPolicy(2, 3, init_std=1.0)
    prompts, actions = torch.tensor([0, 1]), torch.tensor([[2, 0], [1, 1]])
    expected = torch.log_softmax(policy.logits, -1)[prompts.unsqueeze(1), actions]
    torch.testing.assert_close(policy.log_prob(prompts, actions), expected)


def test_bad_inputs_name_the_argument():
    with pytest.raises(TypeError, match="mean_rewards"):
        ContextualBandit(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="mean_rewards"):
        ContextualBandit(torch.tensor([[0.0, float("nan")]]))
    bandit = make_bandit()
    with pytest.raises(ValueError, match="logits"):
        bandit.exact_gradient(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="actions"):
        bandit.rewards(torch.arange(4), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="prompts"):
        SoftmaxPolicy(4, 5).log_prob(torch.zeros(4), torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="n_arms"):
        SoftmaxPolicy(4, 1)
