"""pass@k (against brute-force enumeration of k-subsets) and zero-variance groups / DAPO's filter."""

import itertools
import math

import pytest
import torch

from reinforce_edu.core.groups import (expected_zero_variance_fraction, kept_rows, select_rows,
                                       zero_variance_fraction, zero_variance_groups)
from reinforce_edu.core.passk import pass_at_k, pass_at_k_change, pass_at_k_curve, pass_at_k_per_prompt


def brute_force_pass_at_k(correct: list[int], k: int) -> float:
    """The fraction of all k-subsets of the n samples (drawn without replacement) that hold a right one."""
    subsets = list(itertools.combinations(range(len(correct)), k))
    return sum(any(correct[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_equals_enumeration_of_subsets(n):
    for c in range(n + 1):
        correct = [1] * c + [0] * (n - c)
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(correct, k), abs=1e-12)


def test_pass_at_k_is_unbiased_for_one_minus_one_minus_p_to_the_k():
    # E over c ~ Binomial(n, p) of the estimator = 1 − (1 − p)^k exactly (summed, not sampled)
    n, p = 8, 0.3
    for k in range(1, n + 1):
        mean = sum(math.comb(n, c) * p ** c * (1 - p) ** (n - c) * pass_at_k(n, c, k) for c in range(n + 1))
        assert mean == pytest.approx(1 - (1 - p) ** k, abs=1e-12)
    # the plug-in 1 − (1 − c/n)^k is not: it underestimates (Jensen)
    plug = sum(math.comb(n, c) * p ** c * (1 - p) ** (n - c) * (1 - (1 - c / n) ** 4) for c in range(n + 1))
    assert plug < 1 - (1 - p) ** 4 - 0.01


def test_pass_at_k_per_prompt_and_curve():
    correct = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    v = pass_at_k_per_prompt(correct, 2)
    assert v.tolist() == pytest.approx([0.5, 5 / 6, 0.0])
    curve = pass_at_k_curve(correct)
    assert sorted(curve) == [1, 2, 3, 4]
    assert curve[1][0] == pytest.approx(0.25)
    assert curve[2][1] == pytest.approx(float(v.std() / math.sqrt(3)))
    assert curve[4][0] == pytest.approx(2 / 3)


def test_pass_at_k_bad_input():
    with pytest.raises(ValueError, match="k=5 must be <= n=4"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="c"):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="only 0/1"):
        pass_at_k_per_prompt(torch.tensor([[0.5, 1.0]]), 1)
    with pytest.raises(ValueError, match="NaN"):
        pass_at_k_per_prompt(torch.tensor([[float("nan"), 1.0]]), 1)


def test_pass_at_k_change_against_a_loop_over_seeds_and_prompts():
    g = torch.Generator().manual_seed(0)
    before = (torch.rand(6, 4, generator=g) < 0.3).long()  # (P=6, n=4)
    after = [(torch.rand(6, 4, generator=g) < p).long() for p in (0.5, 0.6, 0.4)]  # S=3 seeds
    for k in (1, 3):
        out = pass_at_k_change(after, before, k)
        d = [[pass_at_k(4, int(a[i].sum()), k) - pass_at_k(4, int(before[i].sum()), k) for i in range(6)] for a in after]
        per_seed = [sum(row) / 6 for row in d]
        per_prompt = [sum(d[s][i] for s in range(3)) / 3 for i in range(6)]
        sd = lambda xs: math.sqrt(sum((x - sum(xs) / len(xs)) ** 2 for x in xs) / (len(xs) - 1))  # noqa: E731
        assert out["mean"] == pytest.approx(sum(per_seed) / 3, abs=1e-12)
        assert out["per_seed"] == pytest.approx(per_seed, abs=1e-12)
        assert out["per_prompt"] == pytest.approx(per_prompt, abs=1e-12)
        assert out["se_seeds"] == pytest.approx(sd(per_seed) / math.sqrt(3), abs=1e-12)
        assert out["se_prompts"] == pytest.approx(sd(per_prompt) / math.sqrt(6), abs=1e-12)
    assert pass_at_k_change(torch.stack(after), before, 1) == pass_at_k_change(after, before, 1)  # (S, P, n) too
    one = pass_at_k_change(after[0], before, 1)  # one seed: no spread over seeds to measure
    assert math.isnan(one["se_seeds"]) and one["per_seed"] == pytest.approx([one["mean"]])
    with pytest.raises(ValueError, match=r"after\[1\] must be a tensor of the shape of before \(6, 4\)"):
        pass_at_k_change([after[0], after[1][:5]], before, 1)
    with pytest.raises(ValueError, match="at least one"):
        pass_at_k_change([], before, 1)


def test_zero_variance_groups_all_pass_and_all_fail_only():
    r = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    assert zero_variance_groups(r).tolist() == [True, True, False, True]
    assert zero_variance_fraction(r) == 0.75


def test_expected_fraction_matches_simulation():
    p = torch.tensor([0.0, 0.1, 0.5, 0.9])
    g = torch.Generator().manual_seed(0)
    for k in (2, 4, 8):
        draws = (torch.rand(20000, 4, k, generator=g) < p[None, :, None]).double()  # (N, P, k)
        sim = zero_variance_groups(draws.view(-1, k)).double().mean().item()
        # 80 000 groups: SE of the simulated fraction <= 0.5/sqrt(80000) ≈ 0.0018; 4 SE
        assert sim == pytest.approx(expected_zero_variance_fraction(p, k), abs=0.008)
    assert expected_zero_variance_fraction(torch.tensor([0.5]), 2) == pytest.approx(0.5)


def test_kept_rows_drops_zero_variance_groups_only():
    rewards = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0])  # k = 2: groups all-pass, mixed, all-fail
    assert kept_rows(rewards, 2).tolist() == [True] * 6
    keep = kept_rows(rewards, 2, "drop_zero_variance")
    assert keep.tolist() == [False, False, True, True, False, False]
    x = torch.arange(12.0).view(6, 2)
    (sel,) = select_rows(keep, x)
    assert sel.tolist() == [[4.0, 5.0], [6.0, 7.0]]
    (same,) = select_rows(torch.ones(6, dtype=torch.bool), x)
    assert same is x
    with pytest.raises(ValueError, match="unknown group_filter"):
        kept_rows(rewards, 2, "dapo")
    with pytest.raises(ValueError, match="k=4 must divide"):
        kept_rows(rewards, 4, "drop_zero_variance")
    with pytest.raises(ValueError, match="NaN"):
        kept_rows(torch.tensor([float("nan"), 1.0]), 2, "drop_zero_variance")


def test_zero_variance_group_has_zero_rloo_and_grpo_advantage():
    from reinforce_edu.core.losses import reinforce_loss
    from reinforce_edu.core.baselines import LeaveOneOutBaseline, BatchMeanBaseline
    logp = torch.randn(6, 3, requires_grad=True)
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0])  # groups of 3: all pass, mixed
    for baseline, scale in ((LeaveOneOutBaseline(), "none"), (BatchMeanBaseline(per_prompt=True), "group_std")):
        out = reinforce_loss(logp, rewards, baseline=baseline, group_size=3, advantage_scale=scale)
        assert out.advantages[:3].abs().max() == 0 and out.advantages[3:].abs().max() > 0
