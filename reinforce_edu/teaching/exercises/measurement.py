r"""Lesson 02's measurement exercise: estimate the shrink of the self-inclusive batch mean, with its
standard error, from the library's samplers, and decide a claim.

The setting is small enough to enumerate: one prompt, 4 arms, k = 2 samples, noiseless rewards, so
every batch (a_1, a_2) and its probability can be listed. The exact expected estimate is
E[ĝ] = Σ_batches P(batch) ĝ(batch), the exact shrink s = E[ĝ]·∇J / |∇J|² (theory: 1 − 1/n = 0.5),
and the exact per-batch spread sd(s) gives the standard error any M batches should have, sd/√M.

Graded: the student's estimate must lie within 3 of their own standard errors of the exact value;
the standard error must be small enough to decide (≤ 0.1) and, in the hidden part, match sd/√M for
their M within a factor of 2; the decision must be the one the exact value implies ("refuted").
"""

from __future__ import annotations

import itertools
import math

import torch

from reinforce_edu.teaching.feedback import ExerciseError

SETTING = dict(n_prompts=1, n_arms=4, noise_std=0.0, seed=0)  # make_bandit(**SETTING)
POLICY = dict(init_std=1.5, seed=0)  # bandit.make_policy(**POLICY)
K = 2  # samples per prompt: n = P·K = 2 per batch
MAX_SE = 0.1
REVISIT = ("lesson 02, 'five baselines against the exact gradient' (the self-inclusive mean shrinks E[ĝ] by 1 − 1/n); "
           "a standard error is the spread of the per-batch values over √M")


def exact_shrink() -> tuple[float, float]:
    """(exact s, exact sd of the per-batch s) by enumerating every batch of the setting."""
    from reinforce_edu.toy.bandits import make_bandit

    bandit = make_bandit(**SETTING)
    policy = bandit.make_policy(**POLICY)
    probs = torch.softmax(policy.logits.detach().double(), -1)[0]  # (A,)
    r = bandit.mean_rewards.double()[0]  # (A,)
    exact = bandit.exact_gradient(policy.logits).double().reshape(-1)  # (D,) = (A,)
    eye = torch.eye(len(probs), dtype=torch.double)
    values, weights = [], []
    for batch in itertools.product(range(len(probs)), repeat=K):
        rewards = r[list(batch)]  # (K,)
        adv = rewards - rewards.mean()  # the self-inclusive batch mean as baseline
        g = sum(a * (eye[b] - probs) for a, b in zip(adv, batch)) / K  # (A,): ĝ of this batch
        values.append(float(g @ exact / exact.square().sum()))
        weights.append(float(torch.prod(probs[list(batch)])))
    mean = sum(w * v for w, v in zip(weights, values))
    var = sum(w * (v - mean) ** 2 for w, v in zip(weights, values))
    return mean, math.sqrt(var)


def check_baseline_shrink(estimate: float, se: float, decision: str, n_batches: int, hidden: bool = False) -> None:
    """Grade a measurement: `estimate` ± `se` of the shrink from `n_batches` batches, and the decision on the claim."""
    for name, value in (("shrink_estimate", estimate), ("shrink_se", se)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ExerciseError(f"{name} should be a finite number (a float), got {value!r}.\n  revisit:  {REVISIT}")
    if decision not in ("supported", "refuted"):
        raise ExerciseError(f"decision should be 'supported' or 'refuted', got {decision!r}")
    if se <= 0:
        raise ExerciseError(f"shrink_se should be positive, got {se}: a measurement from samples has an error")
    if se > MAX_SE:
        raise ExerciseError(f"shrink_se = {se:.3g} is too large to decide the claim (it needs ≤ {MAX_SE}): "
                            f"use more batches.\n  revisit:  {REVISIT}")
    exact, sd = exact_shrink()
    z = (estimate - exact) / se
    if abs(z) > 3:
        raise ExerciseError(f"shrink_estimate = {estimate:.4f} ± {se:.4f} is {z:+.1f} of your standard errors from the "
                            f"exact value: the estimate or its SE is off (is it the projection on ∇J, divided by |∇J|²?)."
                            f"\n  revisit:  {REVISIT}")
    right = "refuted" if abs(exact - 1) > 3 * se else "supported"
    if decision != right:
        raise ExerciseError(f"decision {decision!r}: your own numbers put the shrink {abs(estimate - 1) / se:.1f} SE "
                            f"from 1 (unbiased), so the claim is {right}.\n  revisit:  {REVISIT}")
    if hidden:
        if not isinstance(n_batches, int) or n_batches < 2:
            raise ExerciseError(f"n_batches should be the number of batches you averaged (an int ≥ 2), got {n_batches!r}")
        expected_se = sd / math.sqrt(n_batches)
        if not 0.5 <= se / expected_se <= 2.0:
            raise ExerciseError(f"shrink_se = {se:.4f}, but {n_batches} batches give a standard error near "
                                f"{expected_se:.4f} (the per-batch spread {sd:.3f} over √M).\n  revisit:  {REVISIT}")
    print(f"✓ baseline_shrink: {estimate:.3f} ± {se:.3f} is {z:+.1f} SE from the exact {exact:.3f}; claim {decision}")
