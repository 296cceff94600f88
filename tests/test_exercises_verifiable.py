"""Lesson 08's exercise checkers accept the right answers and catch the usual wrong ones."""

import math

import pytest
import torch

from reinforce_edu.teaching.exercises import lesson08 as ex


def _fails(check, fn, hidden=False) -> str:
    with pytest.raises(ex.ExerciseError) as info:
        check(fn, hidden=hidden)
    return str(info.value)


def right_pass_at_k(n, c, k):
    return 1.0 if n - c < k else 1 - math.comb(n - c, k) / math.comb(n, k)


def test_pass_at_k_checker():
    ex.check_pass_at_k(right_pass_at_k)
    ex.check_pass_at_k(right_pass_at_k, hidden=True)
    assert "without* replacement" in _fails(ex.check_pass_at_k, lambda n, c, k: 1 - (1 - c / n) ** k)
    # the comb formula without the n − c < k case: math.comb gives 0 there, so it is right; a
    # hand-written product that forgets the guard and divides by zero fails in the hidden cases
    def product_no_guard(n, c, k):
        return 1 - math.prod((n - c - i) / (n - i) for i in range(k)) if c < n else 1.0
    ex.check_pass_at_k(product_no_guard, hidden=True)  # also right: the product hits a zero factor
    assert "lesson 08" in _fails(ex.check_pass_at_k, lambda n, c, k: c / n)  # pass@1 for every k
    assert "lesson 08" in _fails(ex.check_pass_at_k, lambda n, c, k: min(1.0, k * c / n))  # union bound


def test_zero_variance_filter_checker():
    def right(rewards):
        return rewards.max(dim=1).values != rewards.min(dim=1).values
    ex.check_zero_variance_filter(right)
    ex.check_zero_variance_filter(right, hidden=True)
    assert "lesson 08" in _fails(ex.check_zero_variance_filter, lambda rewards: ~(rewards > 0).any(dim=1))  # drops any pass
    assert "lesson 08" in _fails(ex.check_zero_variance_filter, lambda rewards: rewards.sum(dim=1) > 0)  # only all-fail
    dapo_binary = lambda rewards: (rewards.mean(dim=1) > 0) & (rewards.mean(dim=1) < 1)  # noqa: E731
    ex.check_zero_variance_filter(dapo_binary)  # right for 0/1 rewards ...
    assert "lesson 08" in _fails(ex.check_zero_variance_filter, dapo_binary, hidden=True)  # ... not with a format term
    assert "bool tensor" in _fails(ex.check_zero_variance_filter, lambda rewards: [True])


def test_dr_grpo_advantages_checker():
    ex.check_dr_grpo_advantages(lambda rewards: rewards - rewards.mean(dim=1, keepdim=True))
    ex.check_dr_grpo_advantages(lambda rewards: rewards - rewards.mean(dim=1, keepdim=True), hidden=True)
    def grpo(rewards):  # GRPO's advantage: divided by the group's std
        return (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)

    def rloo(rewards):  # leave-one-out: a different baseline
        return rewards - (rewards.sum(1, keepdim=True) - rewards) / (rewards.shape[1] - 1)

    def stub(rewards):
        raise NotImplementedError

    assert "returned the wrong values" in _fails(ex.check_dr_grpo_advantages, grpo)
    assert "returned the wrong values" in _fails(ex.check_dr_grpo_advantages, rloo)
    with pytest.raises(NotImplementedError):
        ex.check_dr_grpo_advantages(stub)


def test_answers_that_call_the_library_score_nothing():
    from reinforce_edu.core.groups import zero_variance_groups
    from reinforce_edu.core.passk import pass_at_k
    from reinforce_edu.teaching.exercises import LibraryUnavailableError

    with pytest.raises(LibraryUnavailableError, match="yourself"):
        ex.check_pass_at_k(lambda n, c, k: pass_at_k(n, c, k))
    with pytest.raises(LibraryUnavailableError, match="yourself"):
        ex.check_zero_variance_filter(lambda rewards: ~zero_variance_groups(rewards))
    assert pass_at_k(4, 1, 2) == 0.5  # the library works again after the check
