"""Exercise checkers: a wrong answer gets specific feedback (input, expected, got, what to revisit)."""

import pytest
import torch

from reinforce_edu.teaching import exercises as ex


def _feedback(check, fn) -> str:
    with pytest.raises(ex.ExerciseError) as info:
        check(fn)
    return str(info.value)


def test_wrong_leave_one_out_says_input_expected_got_and_revisit():
    msg = _feedback(ex.check_leave_one_out_baseline, lambda returns: returns.mean(1, keepdim=True).expand_as(returns))
    assert "input:    returns=[[1.0, 2.0, 3.0]]" in msg
    assert "expected: [[2.5, 2.0, 1.5]]" in msg and "got:      [[2.0, 2.0, 2.0]]" in msg
    assert "revisit:  lesson 02" in msg


def test_seed_style_loss_fails_the_reinforce_loss_check():
    def seed_like(logp, ref_logp, rewards, mask, beta, k):  # KL not detached, self-inclusive mean
        returns = rewards - beta * ((logp - ref_logp) * mask).sum(1)
        adv = returns - returns.mean().detach()
        return (-(adv[:, None] * logp * mask).sum(1) / mask.sum(1)).mean()

    assert "lesson 04" in _feedback(ex.check_reinforce_loss, seed_like)


def test_right_value_wrong_gradient_is_caught():
    def no_detach(logp, ref_logp, rewards, mask, beta, k):  # same value as the answer, extra gradient
        kl = ((logp - ref_logp) * mask).sum(1)
        returns = rewards - beta * kl
        g = returns.view(-1, k)
        b = ((g.sum(1, keepdim=True) - g) / (k - 1)).reshape(-1)
        return (-((returns - b)[:, None] * logp * mask).sum(1)).mean()

    assert "gradient w.r.t. logp" in _feedback(ex.check_reinforce_loss, no_detach)


def test_grpo_per_sequence_mean_fails_the_reinforce_loss_check():
    def per_sequence_terms(logp, ref_logp, rewards, mask, beta, k):  # (B,) −A_i Σ_t m_it log π, A detached
        returns = (rewards - beta * ((logp - ref_logp) * mask).sum(1)).detach()
        g = returns.view(-1, k)
        b = ((g.sum(1, keepdim=True) - g) / (k - 1)).reshape(-1)
        return -((returns - b)[:, None] * logp * mask).sum(1)

    def right(logp, ref_logp, rewards, mask, beta, k):
        return per_sequence_terms(logp, ref_logp, rewards, mask, beta, k).mean()

    def seq_mean(logp, ref_logp, rewards, mask, beta, k):  # right otherwise, but 1/|y_i| per sequence
        return (per_sequence_terms(logp, ref_logp, rewards, mask, beta, k) / mask.sum(1)).mean()

    assert "lesson 04" in _feedback(ex.check_reinforce_loss, seq_mean)
    ex.check_reinforce_loss(right)
    ex.check_reinforce_loss(right, hidden=True)


def test_wrong_shape_is_reported():
    msg = _feedback(ex.check_k3, lambda logp, ref_logp: (ref_logp - logp).sum())
    assert "returned shape ()" in msg and "expected (1, 2)" in msg


def test_crash_is_reported_with_its_input():
    def crashes(rewards, mask, gamma):
        raise IndexError("off by one")

    msg = _feedback(ex.check_reward_to_go, crashes)
    assert "raised IndexError: off by one" in msg and "input:" in msg


def test_unsafe_bradley_terry_fails_hidden_large_margins():
    def naive(r_chosen, r_rejected):
        return -torch.log(torch.sigmoid(r_chosen - r_rejected)).mean()

    ex.check_bradley_terry_loss(naive)  # fine on small margins
    with pytest.raises(ex.ExerciseError):
        ex.check_bradley_terry_loss(naive, hidden=True)  # inf at a margin of −120


def test_training_step_without_clipping_or_nan_guard_fails():
    def no_guard(policy, optimizer, prompts, actions, rewards):
        optimizer.zero_grad()
        adv = rewards - (rewards.sum(1, keepdim=True) - rewards) / (rewards.shape[1] - 1)
        loss = -(policy.log_prob(prompts, actions) * adv).mean()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    assert "weights after the first step" in _feedback(ex.check_training_step, no_guard)  # no clipping: the first case


def test_training_step_without_nan_guard_fails_on_the_nan_case():
    def clips_but_no_guard(policy, optimizer, prompts, actions, rewards):
        optimizer.zero_grad()
        adv = rewards - (rewards.sum(1, keepdim=True) - rewards) / (rewards.shape[1] - 1)
        loss = -(policy.log_prob(prompts, actions) * adv.detach()).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        return float(loss.detach())

    assert "weights after a NaN reward must be unchanged" in _feedback(ex.check_training_step, clips_but_no_guard)


def test_stub_raises_not_implemented():
    def stub(probs, actions, advantages):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        ex.check_score_function_estimate(stub)
