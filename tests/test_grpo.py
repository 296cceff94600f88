"""GRPO's std normalisation in reinforce_loss (advantage_scale=...) against the hand formula."""

import statistics

import pytest
import torch

from reinforce_edu.core.baselines import BatchMeanBaseline, LeaveOneOutBaseline
from reinforce_edu.core.credit import aggregation_weights
from reinforce_edu.core.losses import reinforce_loss


def _batch(P=3, k=4, T=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    B = P * k
    logp = (-torch.rand(B, T, generator=g) * 2).requires_grad_(True)
    ref = -torch.rand(B, T, generator=g) * 2
    rewards = torch.randn(B, generator=g)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
    return logp, ref, rewards, mask


def test_group_std_advantages_match_the_grpo_formula_by_hand():
    P, k = 3, 4
    logp, ref, rewards, mask = _batch(P, k)
    beta = 0.2
    out = reinforce_loss(logp, rewards, mask, ref_logp=ref, beta=beta, baseline=BatchMeanBaseline(per_prompt=True),
                         group_size=k, advantage_scale="group_std", aggregation="sum")
    R = (rewards - beta * ((logp.detach() - ref) * mask).sum(1)).tolist()  # returns with the KL folded in
    expected = []
    for i in range(P):  # A_ij = (R_ij - mean_i) / (stdev_i + 1e-4), Python's statistics module as the oracle
        group = R[i * k:(i + 1) * k]
        mu, sd = statistics.fmean(group), statistics.stdev(group)
        expected += [(r - mu) / (sd + 1e-4) for r in group]
    expected = torch.tensor(expected)[:, None] * mask  # (B, T)
    torch.testing.assert_close(out.advantages, expected, atol=1e-5, rtol=1e-5)
    (g,) = torch.autograd.grad(out.loss, logp)
    torch.testing.assert_close(g, -aggregation_weights(mask, "sum") * expected, atol=1e-6, rtol=1e-5)


def test_group_std_makes_each_prompt_scale_free():
    # multiply one prompt's returns by 10: its GRPO advantages do not change (RLOO's grow tenfold)
    P, k = 2, 4
    logp, _, rewards, mask = _batch(P, k)
    scaled = rewards.clone()
    scaled[:k] *= 10
    kw = dict(group_size=k, aggregation="sum")
    grpo = [reinforce_loss(logp, r, mask, baseline=BatchMeanBaseline(per_prompt=True), advantage_scale="group_std",
                           scale_eps=0.0, **kw).advantages for r in (rewards, scaled)]
    torch.testing.assert_close(grpo[0], grpo[1], atol=1e-5, rtol=1e-5)
    rloo = [reinforce_loss(logp, r, mask, baseline=LeaveOneOutBaseline(), **kw).advantages for r in (rewards, scaled)]
    torch.testing.assert_close(rloo[1][:k], 10 * rloo[0][:k])


def test_batch_std_divides_by_one_number_and_none_changes_nothing():
    logp, _, rewards, mask = _batch()
    plain = reinforce_loss(logp, rewards, mask, baseline=LeaveOneOutBaseline(), group_size=4)
    batch = reinforce_loss(logp, rewards, mask, baseline=LeaveOneOutBaseline(), group_size=4,
                           advantage_scale="batch_std")
    none = reinforce_loss(logp, rewards, mask, baseline=LeaveOneOutBaseline(), group_size=4, advantage_scale="none")
    sd = statistics.stdev(rewards.tolist())
    torch.testing.assert_close(batch.advantages, plain.advantages / (sd + 1e-4))
    assert torch.equal(none.advantages, plain.advantages) and torch.equal(none.loss, plain.loss)


def test_token_credit_is_scaled_by_the_same_group_std():
    P, k = 2, 3
    logp, _, _, mask = _batch(P, k)
    rewards = torch.randn(P * k, 5, generator=torch.Generator().manual_seed(1))  # per-token rewards
    kw = dict(baseline=BatchMeanBaseline(per_prompt=True), group_size=k, credit="token")
    plain = reinforce_loss(logp, rewards, mask, **kw)
    scaled = reinforce_loss(logp, rewards, mask, advantage_scale="group_std", **kw)
    sd = plain.returns.view(P, k).std(dim=1).repeat_interleave(k)  # (B,)
    torch.testing.assert_close(scaled.advantages, plain.advantages / (sd + 1e-4)[:, None])


def test_bad_advantage_scale_input_is_rejected():
    logp, _, rewards, mask = _batch(P=4, k=1)
    with pytest.raises(ValueError, match="advantage_scale"):
        reinforce_loss(logp, rewards, mask, advantage_scale="std")
    with pytest.raises(ValueError, match="group_size >= 2"):
        reinforce_loss(logp, rewards, mask, advantage_scale="group_std")
    with pytest.raises(ValueError, match="scale_eps"):
        reinforce_loss(logp, rewards, mask, advantage_scale="batch_std", scale_eps=-1.0)
    one = _batch(P=1, k=1)
    with pytest.raises(ValueError, match="at least 2"):
        reinforce_loss(one[0], one[2], one[3], advantage_scale="batch_std")
