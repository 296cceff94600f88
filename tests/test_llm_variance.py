"""Per-sample score gradients of an LLM's last block (vmap over the tail) against a loop of full
backward passes, and the per-baseline variance against its formula."""

import pytest
import torch

from reinforce_edu.core.baselines import LeaveOneOutBaseline, NoBaseline
from reinforce_edu.llm.sampling import position_ids, sample
from reinforce_edu.llm.variance import gradient_variance, score_gradients
from reinforce_edu.llm.models import tiny_llama
from reinforce_edu.core.per_sample import loop_per_sample_grads


def test_score_gradients_match_a_loop_of_full_backward_passes():
    model, tok = tiny_llama(seed=0, n_layers=3)
    r = sample(model, tok, ["Hi there", "Tell me a story about a very long day"], k=2, max_new_tokens=4, seed=0)
    g = score_gradients(model, r, n_blocks=2)  # (4, D)
    names = [n for n, _ in model.named_parameters() if n.startswith(("model.layers.1.", "model.layers.2."))]
    names.append("model.norm.weight")
    start = r.prompt_length

    def seq_logp(m, ids, mask, cmask):  # log π(y|x) of one row, through the whole model
        logits = m(input_ids=ids[None], attention_mask=mask[None], position_ids=position_ids(mask[None])).logits
        z = logits[0, start - 1:-1].float()
        return ((z.gather(-1, ids[start:, None]).squeeze(-1) - torch.logsumexp(z, -1)) * cmask).sum()

    want = loop_per_sample_grads(model, seq_logp, r.input_ids, r.attention_mask, r.completion_mask, params=names)
    assert g.shape == want.shape and not g.requires_grad
    torch.testing.assert_close(g, want, atol=1e-5, rtol=1e-4)


def test_gradient_variance_formula_and_offset_invariance():
    gen = torch.Generator().manual_seed(0)
    P, k, D = 6, 3, 5
    scores = torch.randn(P * k, D, generator=gen)
    R = torch.randn(P, k, generator=gen)
    rows = gradient_variance(scores, R, {"none": NoBaseline(), "rloo": LeaveOneOutBaseline()})
    s = scores.double().view(P, k, D)
    G = (R.double()[..., None] * s).mean(1)  # (P, D)
    assert rows[0]["variance"] == pytest.approx(float(G.var(0).sum()))
    assert rows[0]["batch_variance"] == pytest.approx(float(G.var(0).sum()) / P)
    shifted = gradient_variance(scores, R + 5.0, {"none": NoBaseline(), "rloo": LeaveOneOutBaseline()})
    assert shifted[1]["variance"] == pytest.approx(rows[1]["variance"])  # RLOO: offsets cancel
    assert shifted[0]["variance"] != pytest.approx(rows[0]["variance"])
    with pytest.raises(ValueError, match="P·k"):
        gradient_variance(scores[:-1], R, {"none": NoBaseline()})


def test_variance_se_matches_the_spread_of_the_variance_over_batches():
    """The delta-method SE of tr Cov(G_i) against the standard deviation of the estimate over 400 batches."""
    g = torch.Generator().manual_seed(3)
    P, k, D = 40, 4, 6
    variances, ses = [], []
    for _ in range(400):
        scores = torch.randn(P * k, D, generator=g) * torch.linspace(0.5, 2.0, D)  # (P·k, D)
        R = torch.randn(P, k, generator=g) + 1.0  # (P, k)
        (row,) = gradient_variance(scores, R, {"none": NoBaseline()})
        variances.append(row["variance"])
        ses.append(row["variance_se"])
    spread = torch.tensor(variances).std().item()  # the SE's target; its own SE ≈ spread / √(2·400) ≈ 3.5 %
    assert 0.8 < (sum(ses) / len(ses)) / spread < 1.2
