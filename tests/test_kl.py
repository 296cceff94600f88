"""KL estimators against the exact KL: per token (categorical) and per sequence (toy enumeration)."""

import pytest
import torch

from reinforce_edu.core.kl import exact_kl, frozen_copy, kl_estimate
from reinforce_edu.toy.enumeration import Enumeration
from reinforce_edu.toy.sequences import ToyPolicy, ToyTask, demonstrations, warm_up


pytestmark = pytest.mark.usefixtures("one_thread_module")


def _within_4_se(samples: torch.Tensor, target: float) -> bool:
    se = float(samples.std()) / samples.numel() ** 0.5
    return abs(float(samples.mean()) - target) <= 4 * se


@pytest.fixture(scope="module")
def categorical():
    g = torch.Generator().manual_seed(0)
    logits, ref_logits = torch.randn(6, generator=g) * 1.5, torch.randn(6, generator=g) * 1.5
    y = torch.multinomial(torch.softmax(logits, -1), 20000, replacement=True, generator=g)
    logp = torch.log_softmax(logits, -1)[y][None, :]  # (1, n) sampled tokens
    ref = torch.log_softmax(ref_logits, -1)[y][None, :]
    return logits, ref_logits, logp, ref


@pytest.mark.parametrize("name", ["k1", "k3"])
def test_unbiased_estimators_match_the_exact_kl(categorical, name):
    logits, ref_logits, logp, ref = categorical
    assert _within_4_se(kl_estimate(logp, ref, name), float(exact_kl(logits, ref_logits)))


def test_k2_is_biased_but_matches_its_own_expectation(categorical):
    logits, ref_logits, logp, ref = categorical
    p, lr = torch.softmax(logits, -1), torch.log_softmax(ref_logits, -1) - torch.log_softmax(logits, -1)
    k2 = kl_estimate(logp, ref, "k2")
    assert _within_4_se(k2, float((p * 0.5 * lr ** 2).sum()))  # E[½ρ²]
    assert not _within_4_se(k2, float(exact_kl(logits, ref_logits)))  # ≠ KL here


def test_k2_and_k3_are_nonnegative_and_lower_variance_than_k1_near_the_reference():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, generator=g)
    ref_logits = logits + 0.3 * torch.randn(6, generator=g)  # π close to π_ref, as in RLHF
    y = torch.multinomial(torch.softmax(logits, -1), 20000, replacement=True, generator=g)
    logp, ref = torch.log_softmax(logits, -1)[y][None, :], torch.log_softmax(ref_logits, -1)[y][None, :]
    k1, k2, k3 = (kl_estimate(logp, ref, n) for n in ("k1", "k2", "k3"))
    assert (k2 >= 0).all() and (k3 >= 0).all() and (k1 < 0).any()
    assert k3.var() < k1.var() / 4 and k2.var() < k1.var() / 4


def test_exact_kl_agrees_with_torch_distributions():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    expected = torch.distributions.kl_divergence(torch.distributions.Categorical(logits=a),
                                                 torch.distributions.Categorical(logits=b))
    assert torch.allclose(exact_kl(a, b), expected, atol=1e-6)


def test_sequence_kl_k1_and_k3_summed_over_tokens_are_unbiased():
    task = ToyTask()
    ref = ToyPolicy(task, seed=0)
    policy = frozen_copy(ref)
    for p in policy.parameters():
        p.requires_grad_(True)
    warm_up(policy, demonstrations(task, 4, noise=0.0), steps=15, lr=0.03)  # move away from ref
    exact = float(Enumeration(task).kl(policy, ref).detach())
    with torch.no_grad():
        batch = policy.sample(torch.arange(task.n_prompts), 2000, torch.Generator().manual_seed(1))
        logp = policy.log_probs(batch.prompt_ids, batch.tokens)
        ref_logp = ref.log_probs(batch.prompt_ids, batch.tokens)
    for name in ("k1", "k3"):
        per_seq = (kl_estimate(logp, ref_logp, name) * batch.mask).sum(1)
        assert _within_4_se(per_seq, exact), name


def test_frozen_copy_is_frozen_and_independent():
    policy = ToyPolicy(ToyTask(), seed=0)
    ref = frozen_copy(policy)
    assert all(not p.requires_grad for p in ref.parameters()) and not ref.training
    with torch.no_grad():
        policy.head.bias.add_(1.0)
    assert not torch.equal(policy.head.bias, ref.head.bias)


def test_kl_bad_input():
    with pytest.raises(ValueError, match="kl_estimator"):
        kl_estimate(torch.zeros(2, 3), torch.zeros(2, 3), "k5")
    with pytest.raises(ValueError, match="ref_logp"):
        kl_estimate(torch.zeros(2, 3), torch.zeros(2, 4), "k1")
    with pytest.raises(TypeError, match="model"):
        frozen_copy("not a model")
