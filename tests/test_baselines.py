"""Baselines: leave-one-out vs a brute-force loop, running mean by hand, bad input."""

import pytest
import torch

from reinforce_edu.core.baselines import (BatchMeanBaseline, FixedValueBaseline, LeaveOneOutBaseline, NoBaseline,
                                     RunningMeanBaseline, ValueBaseline, advantages, make_baseline)


def test_leave_one_out_matches_loop():
    returns = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    b = LeaveOneOutBaseline()(returns)
    loop = torch.empty_like(returns)
    for i in range(5):
        for j in range(4):
            others = [returns[i, l] for l in range(4) if l != j]
            loop[i, j] = sum(others) / len(others)
    torch.testing.assert_close(b, loop)


def test_rloo_advantage_formula_from_the_paper():
    # RLOO (Ahmadian et al. 2024): A_i = R_i − 1/(k−1) Σ_{j≠i} R_j = k/(k−1) (R_i − mean(R))
    returns = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    adv = advantages(returns, LeaveOneOutBaseline())
    k = returns.shape[1]
    torch.testing.assert_close(adv, k / (k - 1) * (returns - returns.mean(1, keepdim=True)))


def test_batch_mean_is_self_inclusive():
    returns = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    torch.testing.assert_close(BatchMeanBaseline()(returns), torch.full((2, 2), 3.0))
    torch.testing.assert_close(BatchMeanBaseline(per_prompt=True)(returns), torch.tensor([[1.5, 1.5], [4.5, 4.5]]))


def test_running_mean_uses_the_past_only():
    base = RunningMeanBaseline(decay=0.5)
    r1, r2 = torch.tensor([[2.0, 4.0]]), torch.tensor([[10.0, 10.0]])
    assert torch.equal(base(r1), torch.zeros(1, 2))  # nothing seen yet
    base.update(r1)
    assert torch.equal(base(r2), torch.full((1, 2), 3.0))  # first update: the batch mean
    base.update(r2)
    assert base.value == pytest.approx(0.5 * 3.0 + 0.5 * 10.0)
    clone = RunningMeanBaseline(decay=0.9)
    clone.load_state_dict(base.state_dict())
    assert clone.value == base.value and clone.decay == 0.5


def test_value_baseline_learns_per_prompt_means():
    gen = torch.Generator().manual_seed(0)
    means = torch.tensor([0.0, 2.0, -1.0])
    base = ValueBaseline(n_prompts=3, lr=0.2)
    prompts = torch.arange(3)
    for _ in range(300):
        base.update(means[:, None] + 0.1 * torch.randn(3, 4, generator=gen), prompts)
    torch.testing.assert_close(base(torch.zeros(3, 1), prompts)[:, 0], means, atol=0.1, rtol=0)


@pytest.mark.parametrize("ids", [[2, 0, 3, 1], [1, 1, 0, 1]])  # distinct (one vectorised step), repeated (in order)
def test_value_baseline_update_matches_the_rule_row_by_row(ids):
    # the oracle: V(x) <- V(x) + lr * (mean_j R_j - V(x)), applied to one row after the other in plain Python
    gen = torch.Generator().manual_seed(1)
    base, expected = ValueBaseline(n_prompts=4, lr=0.3), [0.0] * 4
    for _ in range(20):
        returns = torch.randn(4, 6, generator=gen, dtype=torch.float64)
        base.update(returns, torch.tensor(ids))
        for p, row in zip(ids, returns.tolist()):
            expected[p] += 0.3 * (sum(row) / len(row) - expected[p])
    torch.testing.assert_close(base.values, torch.tensor(expected, dtype=torch.float32), rtol=1e-6, atol=1e-6)


def test_value_baseline_not_detached_carries_gradient():
    base = ValueBaseline(n_prompts=2, detach=False)
    b = base(torch.zeros(2, 3), torch.tensor([0, 1]))
    assert b.requires_grad
    assert not ValueBaseline(n_prompts=2)(torch.zeros(2, 3), torch.tensor([0, 1])).requires_grad


def test_make_baseline_names():
    assert isinstance(make_baseline("rloo"), LeaveOneOutBaseline)
    assert isinstance(make_baseline("none"), NoBaseline)
    assert isinstance(make_baseline("value", n_prompts=2), ValueBaseline)


# --- bad input: one test each -------------------------------------------------------------

def test_mismatched_prompts_shape():
    with pytest.raises(ValueError, match="prompts"):
        ValueBaseline(n_prompts=3)(torch.zeros(3, 2), torch.arange(2))


def test_k_below_two_for_leave_one_out():
    with pytest.raises(ValueError, match="k >= 2"):
        LeaveOneOutBaseline()(torch.zeros(4, 1))


def test_empty_batch():
    with pytest.raises(ValueError, match="returns is empty"):
        NoBaseline()(torch.zeros(0, 4))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_rewards(bad):
    with pytest.raises(ValueError, match="returns contains NaN or inf"):
        LeaveOneOutBaseline()(torch.tensor([[1.0, bad]]))


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 1.5])
def test_decay_outside_open_unit_interval(decay):
    with pytest.raises(ValueError, match="decay"):
        RunningMeanBaseline(decay=decay)


def test_wrong_dtype():
    with pytest.raises(TypeError, match="returns must be a floating-point tensor"):
        RunningMeanBaseline()(torch.ones(2, 2, dtype=torch.long))


def test_returns_must_be_grouped():
    with pytest.raises(ValueError, match="returns must have 2 dimension"):
        NoBaseline()(torch.ones(4))


def test_unknown_baseline_name():
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("median")


def test_running_mean_including_the_current_batch_folds_it_in_before_use():
    base = RunningMeanBaseline(decay=0.5, include_current=True)
    r1, r2 = torch.tensor([[2.0, 4.0]]), torch.tensor([[10.0, 10.0]])
    assert torch.equal(base(r1), torch.full((1, 2), 3.0))  # first batch: its own mean
    base.update(r1)
    assert torch.equal(base(r2), torch.full((1, 2), 0.5 * 3.0 + 0.5 * 10.0))  # state after folding r2 in
    assert base.value == 3.0  # ... without changing the state
    assert "include_current=True" in repr(base)


def test_running_mean_including_the_current_batch_shrinks_the_gradient():
    """Oracle: the expected gradient shrinks by 1 − (1 − d)/n; past batches only: unbiased."""
    from reinforce_edu.toy.bandit_estimates import compare_baselines
    from reinforce_edu.toy.bandits import make_bandit
    bandit = make_bandit(n_prompts=2, n_arms=3, seed=0, offset=1.0)
    policy = bandit.make_policy(init_std=1.0, seed=1)
    pair = {"past": RunningMeanBaseline(decay=0.5), "current": RunningMeanBaseline(0.5, include_current=True)}
    rows = {r["baseline"]: r for r in compare_baselines(bandit, policy, pair, k=1, n_batches=3000, seed=0)}
    n = 2
    assert abs(rows["past"]["shrink"] - 1) < 4 * rows["past"]["shrink_se"]
    assert abs(rows["current"]["shrink"] - (1 - 0.5 / n)) < 4 * rows["current"]["shrink_se"]
    assert abs(rows["current"]["shrink"] - 1) > 4 * rows["current"]["shrink_se"]


def test_fixed_value_baseline_gives_each_prompt_its_value_whatever_the_returns():
    values = torch.tensor([1.0, -2.0, 0.5])
    base = FixedValueBaseline(values)
    r = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    want = torch.tensor([[1.0] * 4, [-2.0] * 4, [0.5] * 4])
    assert torch.equal(base(r), want) and torch.equal(base(r * 10 + 3), want)
    values[0] = 99.0  # a copy is kept: later edits of the caller's tensor do not leak in
    assert torch.equal(base(r), want)
    torch.testing.assert_close(advantages(r, base), r - want)
    with pytest.raises(ValueError, match="3 rows"):
        base(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="values"):
        FixedValueBaseline(torch.tensor([1.0, float("nan")]))
