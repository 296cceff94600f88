"""estimator_stats on draws with known moments; compare_baselines orders the baselines."""

import math

import pytest
import torch

from reinforce_edu.toy.bandits import make_bandit
from reinforce_edu.core.variance import estimator_stats, format_table
from reinforce_edu.toy.bandit_estimates import compare_baselines


def test_stats_recover_known_moments():
    gen = torch.Generator().manual_seed(0)
    m, true_mean, sd = 20000, torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.5, 1.0, 2.0])
    est = true_mean + sd * torch.randn(m, 3, generator=gen)
    stats = estimator_stats(est, true_mean)
    true_var = float((sd ** 2).sum())
    # sample variance of a Gaussian: SE of each s² is σ²·sqrt(2/(m−1))
    se_var = float(((sd ** 4) * 2 / (m - 1)).sum().sqrt())
    assert abs(stats["variance"] - true_var) < 4 * se_var
    assert stats["variance"] == pytest.approx(float(est.double().var(0).sum()))  # the same tr Cov, another way
    assert stats["variance_se"] == pytest.approx(se_var, rel=0.1)  # Var(Σ_j x_j²) = Σ_j 2σ_j⁴ for a Gaussian
    assert abs(stats["shrink"] - 1) < 4 * stats["shrink_se"]
    assert stats["snr"] == pytest.approx(float(true_mean @ true_mean) / stats["variance"])
    assert stats["bias_norm"] < 4 * stats["noise_floor"]


def test_stats_detect_a_shrink():
    gen = torch.Generator().manual_seed(1)
    g = torch.tensor([1.0, 2.0])
    est = 0.8 * g + 0.1 * torch.randn(5000, 2, generator=gen)
    stats = estimator_stats(est, g)
    assert abs(stats["shrink"] - 0.8) < 4 * stats["shrink_se"]
    assert abs(stats["shrink"] - 1.0) > 10 * stats["shrink_se"]


def test_compare_baselines_orders_variance():
    bandit = make_bandit(seed=0, offset=2.0)
    policy = bandit.make_policy(init_std=1.0)
    rows = {r["baseline"]: r for r in compare_baselines(bandit, policy, k=4, n_batches=1000)}
    assert rows["leave_one_out"]["variance"] < rows["none"]["variance"]
    assert rows["value"]["variance"] < rows["none"]["variance"]
    assert "leave_one_out" in format_table(list(rows.values()))
    assert all(math.isfinite(r["snr"]) for r in rows.values())


def test_stats_bad_input():
    with pytest.raises(ValueError, match="at least 2 rows"):
        estimator_stats(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="exact must have 3 elements"):
        estimator_stats(torch.zeros(4, 3), torch.zeros(2))
    with pytest.raises(ValueError, match="baselines is empty"):
        bandit = make_bandit()
        compare_baselines(bandit, bandit.make_policy(), {}, n_batches=4)
