"""reinforce_loss against its equations, the seed's faults against their predicted terms, bad input."""

import math

import pytest
import torch

from reinforce_edu.core.baselines import BatchMeanBaseline, LeaveOneOutBaseline, NoBaseline, advantages
from reinforce_edu.core.credit import AGGREGATIONS, aggregation_weights
from reinforce_edu.core.losses import NonFiniteLossError, reinforce_loss, seed_reinforce_loss
from reinforce_edu.core.policy_gradient import surrogate_loss


def _batch(B=6, T=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(B, T, generator=g) * 2
    ref = -torch.rand(B, T, generator=g) * 2
    rewards = torch.randn(B, generator=g)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
    return logp.requires_grad_(True), ref, rewards, mask


def _grad(loss, x):
    (g,) = torch.autograd.grad(loss, x)
    return g


def test_bandit_is_the_case_T_equals_1():
    logp, _, rewards, _ = _batch(B=8, T=1)
    out = reinforce_loss(logp, rewards, baseline=LeaveOneOutBaseline(), group_size=4, aggregation="sum")
    adv = advantages(rewards.view(2, 4), LeaveOneOutBaseline()).reshape(8, 1)
    expected = surrogate_loss(logp, adv)
    assert torch.allclose(out.loss, expected)
    assert torch.allclose(_grad(out.loss, logp), _grad(surrogate_loss(logp, adv), logp))


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_reward_placement_gradient_is_minus_weight_times_detached_advantage(aggregation):
    logp, ref, rewards, mask = _batch()
    beta = 0.3
    out = reinforce_loss(logp, rewards, mask, ref_logp=ref, beta=beta, aggregation=aggregation)
    kl = ((logp.detach() - ref) * mask).sum(1)
    assert torch.allclose(out.returns, rewards - beta * kl)  # R_i = r_i − β Σ_t k1_t
    w = aggregation_weights(mask, aggregation)
    expected = -w * out.returns[:, None] * mask  # no baseline: A_i = R_i
    assert torch.allclose(_grad(out.loss, logp), expected, atol=1e-6)


def test_loss_placement_adds_the_k3_gradient():
    logp, ref, rewards, mask = _batch()
    beta = 0.2
    out = reinforce_loss(logp, rewards, mask, ref_logp=ref, beta=beta, kl_estimator="k3",
                         kl_placement="loss", aggregation="token_mean")
    assert torch.allclose(out.returns, rewards)  # the KL is not in the return
    w = aggregation_weights(mask, "token_mean")
    dk3 = 1 - torch.exp(ref - logp.detach())  # d/dℓ [(e^{ρ} − 1) − ρ], ρ = ref − ℓ
    expected = w * (-rewards[:, None] + beta * dk3) * mask
    assert torch.allclose(_grad(out.loss, logp), expected, atol=1e-6)
    assert out.kl_loss > 0


def test_baseline_is_called_on_grouped_returns():
    logp, ref, rewards, mask = _batch(B=6)
    out = reinforce_loss(logp, rewards, mask, baseline=LeaveOneOutBaseline(), group_size=3)
    R = rewards.view(2, 3)
    b = (R.sum(1, keepdim=True) - R) / 2
    assert torch.allclose(out.baseline, b.reshape(6))
    assert torch.allclose(out.advantages, (rewards - b.reshape(6))[:, None] * mask)


def test_seed_gradient_differs_by_exactly_the_predicted_term():
    logp, ref, rewards, mask = _batch(B=8)
    beta = 0.4
    seed = seed_reinforce_loss(logp, rewards, ref, mask, beta=beta)
    fixed_a = reinforce_loss(logp, rewards, mask, ref_logp=ref, beta=beta, baseline=BatchMeanBaseline(),
                             group_size=8, aggregation="sum")
    # fault (a): ∇L_seed − ∇L_corrected = ∇ (β / 2B) Σ_i (log π(y_i))²  =  (β/B) Σ_i log π(y_i) ∇log π(y_i)
    seq_logp = (logp.detach() * mask).sum(1, keepdim=True)  # (B, 1)
    predicted = beta / 8 * seq_logp * mask
    assert torch.allclose(_grad(seed, logp) - _grad(fixed_a.loss, logp), predicted, atol=1e-6)
    assert torch.allclose(seed, fixed_a.loss)  # same value: only the gradient differs


def test_seed_with_both_fixes_equals_reinforce_loss_with_leave_one_out():
    logp, ref, rewards, mask = _batch(B=8)
    seed = seed_reinforce_loss(logp, rewards, ref, mask, beta=0.4, detach_kl=True, leave_one_out=True)
    ours = reinforce_loss(logp, rewards, mask, ref_logp=ref, beta=0.4, baseline=LeaveOneOutBaseline(),
                          group_size=8, aggregation="sum")
    assert torch.allclose(seed, ours.loss)
    assert torch.allclose(_grad(seed, logp), _grad(ours.loss, logp))


def test_self_inclusive_baseline_shrinks_by_one_minus_one_over_n():
    # fault (b) without the KL: (R_i − mean R) = (1 − 1/n)(R_i − mean of the others)
    logp, ref, rewards, mask = _batch(B=5)
    seed = seed_reinforce_loss(logp, rewards, ref, mask, beta=0.0)
    loo = seed_reinforce_loss(logp, rewards, ref, mask, beta=0.0, leave_one_out=True)
    assert torch.allclose(_grad(seed, logp), (1 - 1 / 5) * _grad(loo, logp), atol=1e-6)


@pytest.mark.parametrize("credit", ["sequence", "token"])
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_gradient_exactly_zero_after_eos(credit, aggregation):
    logp, ref, _, mask = _batch()
    rewards = torch.randn(6, 5)
    poisoned = torch.where(mask > 0, logp, torch.full_like(logp, float("nan")))  # garbage after EOS
    out = reinforce_loss(poisoned, rewards, mask, ref_logp=ref, beta=0.1, kl_estimator="k3",
                         kl_placement="loss", credit=credit, aggregation=aggregation,
                         baseline=LeaveOneOutBaseline(), group_size=3)
    g = _grad(out.loss, logp)
    assert torch.isfinite(out.loss)
    assert (g[mask == 0] == 0).all()
    assert (out.advantages[mask == 0] == 0).all()


def test_returns_are_what_the_caller_updates_the_baseline_with():
    from reinforce_edu.core.baselines import RunningMeanBaseline
    logp, ref, rewards, mask = _batch(B=6)
    bl = RunningMeanBaseline(decay=0.5)
    out = reinforce_loss(logp, rewards, mask, ref_logp=ref, beta=0.1, baseline=bl, group_size=3)
    assert torch.all(out.baseline == 0)  # pure call: not updated yet
    bl.update(out.returns.view(2, 3))
    assert math.isclose(bl.value, float(out.returns.mean()), rel_tol=1e-6)


# ---- bad input: one test each, the error names the argument -------------------------------

def test_all_zero_mask_is_rejected():
    logp, _, rewards, mask = _batch()
    with pytest.raises(ValueError, match="mask"):
        reinforce_loss(logp, rewards, torch.zeros_like(mask))


def test_mismatched_sequence_lengths_are_rejected():
    logp, ref, rewards, mask = _batch(T=5)
    with pytest.raises(ValueError, match="mask"):
        reinforce_loss(logp, rewards, mask[:, :4])
    with pytest.raises(ValueError, match="rewards"):
        reinforce_loss(logp, torch.zeros(6, 4), mask)
    with pytest.raises(ValueError, match="ref_logp"):
        reinforce_loss(logp, rewards, mask, ref_logp=ref[:, :4], beta=0.1)


def test_negative_beta_is_rejected():
    logp, ref, rewards, mask = _batch()
    with pytest.raises(ValueError, match="beta"):
        reinforce_loss(logp, rewards, mask, ref_logp=ref, beta=-0.1)


def test_unknown_estimator_is_rejected():
    logp, ref, rewards, mask = _batch()
    with pytest.raises(ValueError, match="kl_estimator"):
        reinforce_loss(logp, rewards, mask, ref_logp=ref, beta=0.1, kl_estimator="k4")


def test_unknown_aggregation_is_rejected():
    logp, _, rewards, mask = _batch()
    with pytest.raises(ValueError, match="aggregation"):
        reinforce_loss(logp, rewards, mask, aggregation="mean")


def test_nan_rewards_are_rejected():
    logp, _, rewards, mask = _batch()
    rewards[2] = float("nan")
    with pytest.raises(ValueError, match="rewards"):
        reinforce_loss(logp, rewards, mask)


def test_group_size_must_divide_the_batch():
    logp, _, rewards, mask = _batch(B=6)
    with pytest.raises(ValueError, match="group_size"):
        reinforce_loss(logp, rewards, mask, group_size=4)


def test_reference_with_grad_is_rejected():
    logp, ref, rewards, mask = _batch()
    with pytest.raises(ValueError, match="ref_logp"):
        reinforce_loss(logp, rewards, mask, ref_logp=ref.clone().requires_grad_(True), beta=0.1)


def test_beta_without_reference_is_rejected():
    logp, _, rewards, mask = _batch()
    with pytest.raises(ValueError, match="ref_logp"):
        reinforce_loss(logp, rewards, mask, beta=0.1)


def test_unknown_credit_and_bad_gamma_are_rejected():
    logp, _, rewards, mask = _batch()
    with pytest.raises(ValueError, match="credit"):
        reinforce_loss(logp, rewards, mask, credit="tokens")
    with pytest.raises(ValueError, match="gamma"):
        reinforce_loss(logp, rewards, mask, credit="token", gamma=1.5)


def test_non_tensor_logp_is_a_type_error():
    with pytest.raises(TypeError, match="logp"):
        reinforce_loss([[0.0]], torch.zeros(1))


def test_default_baseline_is_none():
    logp, _, rewards, mask = _batch()
    a = reinforce_loss(logp, rewards, mask)
    b = reinforce_loss(logp, rewards, mask, baseline=NoBaseline())
    assert torch.equal(a.loss, b.loss)


def test_position_baseline_is_leave_one_out_of_the_reward_to_go():
    logp, _, _, _ = _batch(B=4, T=3)
    r = torch.tensor([[1.0, 0, 2], [0, 1, 1], [3, 0, 0], [1, 1, 1]])
    out = reinforce_loss(logp, r, credit="token", baseline=LeaveOneOutBaseline(), group_size=2,
                         token_baseline="position")
    G = torch.tensor([[3.0, 2, 2], [2, 2, 1], [3, 0, 0], [3, 2, 1]])  # reward-to-go, by hand
    b = torch.tensor([[2.0, 2, 1], [3, 2, 2], [3, 2, 1], [3, 0, 0]])  # the other sample of the pair
    assert torch.allclose(out.advantages, G - b)
    with pytest.raises(ValueError, match="token_baseline"):
        reinforce_loss(logp, r, credit="token", token_baseline="prefix")


def test_a_nonfinite_loss_is_refused():
    """Finite inputs whose advantages overflow fp32: the loss is refused with its own error (a ValueError)."""
    logp = torch.zeros(4, 3, requires_grad=True)
    rewards = torch.tensor([3e38, -3e38, 3e38, -3e38])
    with pytest.raises(NonFiniteLossError, match="the loss is not finite"):
        reinforce_loss(logp, rewards, baseline=LeaveOneOutBaseline(), group_size=2)
    assert issubclass(NonFiniteLossError, ValueError)
    out = reinforce_loss(logp, rewards / 1e38, baseline=LeaveOneOutBaseline(), group_size=2)
    assert torch.isfinite(out.loss)
