"""The LLM's learned value baseline: closed-form ridge vs lstsq, leave-one-out vs n refits, features that do
not depend on the rest of the batch (left padding), a baseline that never reads the batch's returns."""

import math

import pytest
import torch

from reinforce_edu.core.baselines import FixedValueBaseline
from reinforce_edu.llm.models import tiny_llama
from reinforce_edu.llm.value_baseline import fit_value_head, loo_residuals, prompt_features, ridge_fit

PROMPTS = ["Hi there", "Tell me a story about a very long day at the beach", "Why is the sky blue?",
           "Write a haiku", "What is two plus two?", "Describe your favourite food in one sentence"]


def _data(n=12, F=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    phi = torch.randn(n, F, generator=g, dtype=torch.float64)
    y = phi @ torch.randn(F, generator=g, dtype=torch.float64) + 2.0 + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    return phi, y


@pytest.mark.parametrize("lam", [1e-3, 0.5, 7.0])
def test_ridge_matches_lstsq_on_the_augmented_system(lam):
    """min ‖Φw + b − y‖² + λ‖w‖² is least squares on [[Φ, 1], [√λ I, 0]] against [y, 0]."""
    phi, y = _data()
    w, b = ridge_fit(phi, y, lam)
    n, F = phi.shape
    top = torch.cat([phi, torch.ones(n, 1, dtype=phi.dtype)], 1)
    bottom = torch.cat([math.sqrt(lam) * torch.eye(F, dtype=phi.dtype), torch.zeros(F, 1, dtype=phi.dtype)], 1)
    beta = torch.linalg.lstsq(torch.cat([top, bottom]), torch.cat([y, torch.zeros(F, dtype=y.dtype)])[:, None]).solution[:, 0]
    torch.testing.assert_close(w, beta[:-1], atol=1e-10, rtol=1e-9)  # fp64 on a well-conditioned 12x6 system
    assert b == pytest.approx(float(beta[-1]), abs=1e-10)


def test_ridge_at_infinity_is_the_past_mean_and_large_lambda_tends_to_it():
    phi, y = _data()
    w, b = ridge_fit(phi, y, math.inf)
    assert torch.count_nonzero(w) == 0 and b == pytest.approx(float(y.mean()))
    w_big, b_big = ridge_fit(phi, y, 1e9)
    assert w_big.abs().max() < 1e-6 and b_big == pytest.approx(float(y.mean()), abs=1e-6)


@pytest.mark.parametrize("lam", [0.1, 3.0, math.inf])
def test_leave_one_out_shortcut_matches_n_refits(lam):
    phi, y = _data(n=9, F=4, seed=1)
    loop = []
    for i in range(len(y)):
        keep = torch.arange(len(y)) != i
        w, b = ridge_fit(phi[keep], y[keep], lam)
        loop.append(float(y[i] - (phi[i] @ w + b)))
    torch.testing.assert_close(loo_residuals(phi, y, lam), torch.tensor(loop, dtype=torch.float64), atol=1e-9, rtol=1e-8)


def test_fit_value_head_picks_the_lambda_with_the_smallest_loo_error():
    phi, y = _data(n=30, F=4, seed=2)
    head = fit_value_head(phi, y)
    assert head.lam == min(head.loo_mse, key=head.loo_mse.get) and math.isfinite(head.lam)  # features do predict
    assert head.loo_mse[head.lam] < 0.1 * head.loo_mse[math.inf]  # and far better than the constant
    noise = torch.randn(30, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert fit_value_head(phi, noise).lam == math.inf  # targets unrelated to φ: LOO keeps the past mean
    w, b = ridge_fit(phi, y, head.lam)
    torch.testing.assert_close(head.predict(phi[:3].float()), (phi[:3] @ w + b).float())


def test_baseline_ignores_the_batch_returns_and_follows_a_reward_offset():
    phi, y = _data(n=10, F=3)
    head = fit_value_head(phi.float(), y.float())
    now = torch.randn(4, 3, generator=torch.Generator().manual_seed(7))
    base = head.baseline(now)
    R1 = torch.randn(4, 5, generator=torch.Generator().manual_seed(8))
    b1, b2 = base(R1), base(100 * R1 - 3)
    assert torch.equal(b1, b2) and b1.shape == (4, 5)
    torch.testing.assert_close(b1[:, 0], head.predict(now))
    assert torch.equal(b1, b1[:, :1].expand(4, 5))  # one value per prompt
    shifted = fit_value_head(phi.float(), y.float() + 3.0)  # the unpenalised intercept takes the offset whole
    torch.testing.assert_close(shifted.predict(now), head.predict(now) + 3.0, atol=1e-4, rtol=0)


def test_prompt_features_do_not_depend_on_the_rest_of_the_batch():
    model, tok = tiny_llama(seed=0)
    model.eval()
    batch = prompt_features(model, tok, PROMPTS)  # left-padded to the longest prompt
    assert batch.shape == (len(PROMPTS), model.config.hidden_size) and batch.dtype == torch.float32
    alone = torch.cat([prompt_features(model, tok, [p]) for p in PROMPTS])  # no padding at all
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-4)  # fp32 matmuls of other shapes
    small = prompt_features(model, tok, PROMPTS, batch_size=4)
    torch.testing.assert_close(batch, small, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(batch[0], batch[1])  # different prompts, different features
    want = model.base_model.norm  # the final norm is applied: its weight scales the features
    with torch.no_grad():
        want.weight.mul_(2.0)
    torch.testing.assert_close(prompt_features(model, tok, PROMPTS[:1]), 2 * alone[:1], atol=1e-5, rtol=1e-4)


def test_bad_shapes_raise():
    phi, y = _data()
    with pytest.raises(ValueError, match="targets"):
        fit_value_head(phi, y[:-1])
    with pytest.raises(ValueError, match="targets"):
        ridge_fit(phi, y[:, None], 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        fit_value_head(phi[:1], y[:1])
    with pytest.raises(ValueError, match="lam"):
        ridge_fit(phi, y, 0.0)
    head = fit_value_head(phi, y)
    with pytest.raises(ValueError, match="columns"):
        head.predict(torch.zeros(3, phi.shape[1] + 1))
    base = head.baseline(phi[:4].float())
    with pytest.raises(ValueError, match="4 rows"):
        base(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="values"):
        FixedValueBaseline(torch.zeros(2, 2))
