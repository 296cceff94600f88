"""The usual wrong answers fail each exercise with a message that names the mistake; the right ones pass.

Each right answer here is written from the exercise's formula, independently of the library.
"""

import pytest
import torch
from torch.func import grad, vmap

from reinforce_edu.teaching import exercises as ex


def _feedback(check, *args) -> str:
    with pytest.raises(ex.ExerciseError) as info:
        check(*args)
    return str(info.value)


def _passes(check, fn):
    check(fn)
    check(fn, hidden=True)


# ---------------------------------------------------------------- lesson 02 ---------------------------------------

def loo(returns):
    return (returns.sum(1, keepdim=True) - returns) / (returns.shape[1] - 1)


def test_leave_one_out_off_by_one_and_self_inclusive_are_named():
    _passes(ex.check_leave_one_out_baseline, loo)
    msg = _feedback(ex.check_leave_one_out_baseline, lambda returns: (returns.sum(1, keepdim=True) - returns) / returns.shape[1])
    assert "likely:   divided by k, not k − 1" in msg
    msg = _feedback(ex.check_leave_one_out_baseline, lambda returns: returns.mean(1, keepdim=True).expand_as(returns))
    assert "likely:   the self-inclusive mean" in msg


def _one(theta, x, a, adv):  # A_i log π_θ(a_i|x_i) for one sample (indexing that vmap can batch)
    return adv * torch.log_softmax(theta[x.unsqueeze(0)][0], -1).gather(0, a.unsqueeze(0))[0]


def variance_vmap(policy, prompts, actions, advantages):
    g = vmap(grad(_one), in_dims=(None, 0, 0, 0))(policy.logits.detach(), prompts, actions, advantages)
    return float(g.reshape(len(prompts), -1).var(dim=0).sum())


def variance_loop(policy, prompts, actions, advantages):  # right number, one backward pass per sample
    rows = []
    for x, a, adv in zip(prompts, actions, advantages):
        theta = policy.logits.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(_one(theta, x, a, adv), theta)
        rows.append(g.reshape(-1))
    return float(torch.stack(rows).var(dim=0).sum())


def test_gradient_variance_vmap_passes_and_a_loop_fails_with_its_call_counts():
    _passes(ex.check_gradient_variance, variance_vmap)
    msg = _feedback(ex.check_gradient_variance, variance_loop)
    assert "loops over the samples" in msg and "torch.func.vmap" in msg


def test_gradient_variance_biased_variance_is_named():
    def biased(policy, prompts, actions, advantages):
        g = vmap(grad(_one), in_dims=(None, 0, 0, 0))(policy.logits.detach(), prompts, actions, advantages)
        return float(g.reshape(len(prompts), -1).var(dim=0, unbiased=False).sum())

    assert "likely:   divided by n, not n − 1" in _feedback(ex.check_gradient_variance, biased)


# ---------------------------------------------------------------- measurement -------------------------------------

def _measure(n_batches=2000, seed=1):
    from reinforce_edu.core.baselines import BatchMeanBaseline
    from reinforce_edu.teaching.exercises.measurement import K, POLICY, SETTING
    from reinforce_edu.toy.bandit_estimates import baseline_estimates, sample_batches
    from reinforce_edu.toy.bandits import make_bandit

    bandit = make_bandit(**SETTING)
    policy = bandit.make_policy(**POLICY)
    exact = bandit.exact_gradient(policy.logits).reshape(-1).double()
    _, per_batch = baseline_estimates(policy, sample_batches(bandit, policy, n_batches, K, seed=seed), BatchMeanBaseline())
    s = per_batch.double() @ exact / exact.square().sum()  # (M,)
    return float(s.mean()), float(s.std() / n_batches ** 0.5)


def test_exact_shrink_by_enumeration_is_one_minus_one_over_n():
    from reinforce_edu.teaching.exercises.measurement import K, exact_shrink

    s, sd = exact_shrink()
    assert abs(s - (1 - 1 / K)) < 1e-6 and sd > 0  # the theorem E[ĝ] = (1 − 1/n)∇J, here n = K = 2


def test_measurement_graded_against_the_exact_value_within_the_stated_se():
    est, se = _measure()
    ex.check_baseline_shrink(est, se, "refuted", 2000)
    ex.check_baseline_shrink(est, se, "refuted", 2000, hidden=True)
    assert "so the claim is refuted" in _feedback(ex.check_baseline_shrink, est, se, "supported", 2000)
    assert "too large to decide" in _feedback(ex.check_baseline_shrink, est, 0.5, "refuted", 2000)
    assert "of your standard errors from the exact value" in _feedback(ex.check_baseline_shrink, 1.0, se, "refuted", 2000)
    # an SE three times too small for 2000 batches: the visible check cannot tell, the hidden one does
    ex.check_baseline_shrink(0.5, se / 3, "refuted", 2000)
    assert "give a standard error near" in _feedback(ex.check_baseline_shrink, 0.5, se / 3, "refuted", 2000, True)


# ---------------------------------------------------------------- lesson 03 ---------------------------------------

def token_mean(logp, advantages, mask):
    return -(mask * advantages * logp).sum() / mask.sum()


def test_token_mean_wrong_aggregations_are_named():
    _passes(ex.check_token_mean_loss, token_mean)
    seq_mean = lambda logp, advantages, mask: (-(mask * advantages * logp).sum(1) / mask.sum(1)).mean()  # noqa: E731
    assert "likely:   this is seq_mean" in _feedback(ex.check_token_mean_loss, seq_mean)
    shifted = lambda logp, advantages, mask: token_mean(logp, advantages, torch.nn.functional.pad(mask, (1, 0))[:, :-1])  # noqa: E731
    assert "likely:   the mask is off by one" in _feedback(ex.check_token_mean_loss, shifted)
    all_tokens = lambda logp, advantages, mask: -(mask * advantages * logp).sum() / mask.numel()  # noqa: E731
    assert "likely:   the masked tokens count in the denominator" in _feedback(ex.check_token_mean_loss, all_tokens)


def test_reward_to_go_off_by_one_mask_is_named():
    def rtg(rewards, mask, gamma, shift=False):
        if shift:
            mask = torch.nn.functional.pad(mask, (1, 0))[:, :-1]
        out, running = torch.zeros_like(rewards), torch.zeros(rewards.shape[0])
        for t in reversed(range(rewards.shape[1])):
            running = rewards[:, t] * mask[:, t] + gamma * running
            out[:, t] = running * mask[:, t]
        return out

    _passes(ex.check_reward_to_go, rtg)
    assert "likely:   the mask is off by one" in _feedback(ex.check_reward_to_go, lambda **kw: rtg(**kw, shift=True))


# ---------------------------------------------------------------- lesson 06 ---------------------------------------

def _loo_step(policy, optimizer, prompts, actions, rewards, zero=True, detach=True, clip=True):
    if zero:
        optimizer.zero_grad()
    k = rewards.shape[1]
    adv = rewards - (rewards.sum(dim=1, keepdim=True) - rewards) / (k - 1)
    loss = -(policy.log_prob(prompts, actions) * (adv.detach() if detach else adv)).mean()
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0 if clip else float("inf"))
    if torch.isfinite(loss) and torch.isfinite(norm):
        optimizer.step()
    return float(loss.detach())


def test_training_step_right_answer_passes():
    _passes(ex.check_training_step, _loo_step)


def test_training_step_missing_zero_grad_fails_on_the_second_step():
    msg = _feedback(ex.check_training_step, lambda **kw: _loo_step(**kw, zero=False))
    assert "after the second step with the same optimiser" in msg and "zero it first" in msg


def test_training_step_undetached_advantage_fails_when_rewards_carry_gradient():
    msg = _feedback(ex.check_training_step, lambda **kw: _loo_step(**kw, detach=False))
    assert "rewards carry gradient: the advantage must be detached" in msg


def importance(logp, old_logp, advantages, mask, detach=True, use_mask=True):
    old = old_logp.detach() if detach else old_logp
    diff = (logp - old) * mask if use_mask else logp - old
    return -(torch.exp(diff.sum(1)) * advantages).mean()


def test_importance_weights_right_passes_and_undetached_old_or_unmasked_fail():
    _passes(ex.check_importance_weights, importance)
    msg = _feedback(ex.check_importance_weights, lambda **kw: importance(**kw, detach=False))
    assert "detach old_logp" in msg
    msg = _feedback(ex.check_importance_weights, lambda **kw: importance(**kw, use_mask=False))
    assert "likely:   the padding counts" in msg


# ---------------------------------------------------------------- lesson 07 ---------------------------------------

def grpo(rewards, k, eps):
    g = rewards.view(-1, k)
    return ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + eps)).reshape(-1)


def test_grpo_right_passes_and_biased_std_or_global_normalisation_are_named():
    _passes(ex.check_grpo_advantages, grpo)
    biased = lambda rewards, k, eps: ((rewards.view(-1, k) - rewards.view(-1, k).mean(1, keepdim=True))  # noqa: E731
                                      / (rewards.view(-1, k).std(1, unbiased=False, keepdim=True) + eps)).reshape(-1)
    assert "likely:   the biased std" in _feedback(ex.check_grpo_advantages, biased)
    assert "likely:   normalised over the whole batch" in _feedback(ex.check_grpo_advantages,
                                                                    lambda rewards, k, eps: grpo(rewards, rewards.numel(), eps))


def ppo(logp, old_logp, advantages, mask, clip_range, pessimistic=True, detach=True, seq_mean=False):
    old = old_logp.detach() if detach else old_logp
    ratio = torch.exp((logp - old) * mask)
    a, b = -advantages * ratio, -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)
    per_token = (torch.maximum(a, b) if pessimistic else torch.minimum(a, b)) * mask
    return (per_token.sum(1) / mask.sum(1)).mean() if seq_mean else per_token.sum() / mask.sum()


def test_ppo_right_passes_and_the_usual_mistakes_fail():
    _passes(ex.check_ppo_clip_loss, ppo)
    assert "likely:   min of the two negated terms" in _feedback(ex.check_ppo_clip_loss, lambda **kw: ppo(**kw, pessimistic=False))
    assert "likely:   this is seq_mean" in _feedback(ex.check_ppo_clip_loss, lambda **kw: ppo(**kw, seq_mean=True))
    assert "detach old_logp" in _feedback(ex.check_ppo_clip_loss, lambda **kw: ppo(**kw, detach=False))
