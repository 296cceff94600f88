"""Sampling and scoring completions (reinforce_edu/llm/sampling.py) on a tiny random Llama.

Oracles: the batched, left-padded, completion-only log-probs equal a per-row loop of
unpadded full-vocabulary log-softmaxes; the sampled first tokens follow the model's own
softmax (no top-k truncation), within 4 standard errors.
"""

import pytest
import torch

from reinforce_edu.llm.logprobs import completion_logprobs, token_logprobs
from reinforce_edu.llm.sampling import chat_prompts, encode_prompts, position_ids, sample
from reinforce_edu.llm.models import tiny_llama

PROMPTS = ["Hi.", "Tell me about the weather on a long rainy Monday morning.", "Describe a dog."]


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama(seed=0)


def test_rollout_layout_and_seed(tiny):
    model, tok = tiny
    state = torch.random.get_rng_state()
    r = sample(model, tok, PROMPTS, k=2, max_new_tokens=5, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # a seeded sample leaves the global RNG alone
    B, L = r.input_ids.shape
    assert B == 6 and r.attention_mask.shape == (B, L) and r.completion_mask.shape == (B, 5)
    assert r.prompt_length == L - 5 and len(r.completions) == 6
    assert r.repeated_prompts == [p for p in PROMPTS for _ in range(2)]
    # prompt-major: rows 2i and 2i+1 carry the same left-padded prompt
    for i in range(3):
        assert torch.equal(r.input_ids[2 * i, :r.prompt_length], r.input_ids[2 * i + 1, :r.prompt_length])
    assert r.attention_mask[0, 0] == 0 and r.attention_mask[:, -1].all()  # short prompt is padded on the left
    again = sample(model, tok, PROMPTS, k=2, max_new_tokens=5, seed=3)
    other = sample(model, tok, PROMPTS, k=2, max_new_tokens=5, seed=4)
    assert torch.equal(r.input_ids, again.input_ids)
    assert not torch.equal(r.input_ids, other.input_ids)


def test_logprobs_match_unpadded_loop(tiny):
    model, tok = tiny
    r = sample(model, tok, PROMPTS, k=2, max_new_tokens=6, seed=0)
    logp, entropy = completion_logprobs(model, r.input_ids, r.attention_mask, r.prompt_length, return_entropy=True)
    assert logp.shape == (6, 6) and logp.dtype == torch.float32 and logp.requires_grad
    for i in range(6):
        keep = r.attention_mask[i].bool()
        ids = r.input_ids[i][keep][None]  # (1, L_i) without padding
        start = r.prompt_length - int((~keep).sum())
        with torch.no_grad():
            full = torch.log_softmax(model(ids).logits.float(), dim=-1)[0]  # (L_i, V)
        want = full[start - 1:-1].gather(-1, ids[0, start:, None]).squeeze(-1)  # (T,)
        torch.testing.assert_close(logp[i].detach(), want, atol=1e-4, rtol=0)
        want_h = -(full[start - 1:-1].exp() * full[start - 1:-1]).sum(-1)
        torch.testing.assert_close(entropy[i], want_h, atol=1e-3, rtol=0)


def test_token_logprobs_match_log_softmax():
    """The one-softmax log-probs, entropy and gradient equal log_softmax + gather and −Σ p log p (autograd)."""
    gen = torch.Generator().manual_seed(0)
    z = (3 * torch.randn(4, 5, 13, generator=gen, dtype=torch.float64)).requires_grad_()
    y = torch.randint(0, 13, (4, 5), generator=gen)
    logp, entropy = token_logprobs(z, y, return_entropy=True)
    log_sm = torch.log_softmax(z, dim=-1)
    torch.testing.assert_close(logp, log_sm.gather(-1, y[..., None]).squeeze(-1), atol=1e-12, rtol=0)
    torch.testing.assert_close(entropy, -(log_sm.exp() * log_sm).sum(-1).detach(), atol=1e-12, rtol=0)
    assert not entropy.requires_grad
    assert torch.autograd.gradcheck(lambda z: token_logprobs(z, y), (z,))
    torch.testing.assert_close(token_logprobs(z, y), logp, atol=0, rtol=0)
    g = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    (got,) = torch.autograd.grad((logp * g).sum(), z)
    (want,) = torch.autograd.grad((log_sm.gather(-1, y[..., None]).squeeze(-1) * g).sum(), z)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def test_token_logprobs_of_bf16_logits_are_fp32():
    """bf16 logits (autocast's): fp32 log-probs equal to those of the upcast logits; the gradient comes back in bf16."""
    gen = torch.Generator().manual_seed(1)
    z = (4 * torch.randn(3, 7, 50, generator=gen)).bfloat16().requires_grad_()
    y = torch.randint(0, 50, (3, 7), generator=gen)
    logp, entropy = token_logprobs(z, y, return_entropy=True)
    assert logp.dtype == entropy.dtype == torch.float32
    z32 = z.detach().float().requires_grad_()
    want, want_h = token_logprobs(z32, y, return_entropy=True)
    torch.testing.assert_close(logp, want, atol=1e-6, rtol=0)
    torch.testing.assert_close(entropy, want_h, atol=1e-6, rtol=0)
    (g,) = torch.autograd.grad(logp.sum(), z)
    (g32,) = torch.autograd.grad(want.sum(), z32)
    assert g.dtype == torch.bfloat16
    torch.testing.assert_close(g, g32.bfloat16(), atol=0, rtol=0)  # the fp32 gradient, rounded once


def test_token_logprobs_bad_input():
    with pytest.raises(TypeError, match="logits must be a floating-point tensor"):
        token_logprobs(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="targets must be an integer tensor"):
        token_logprobs(torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match=r"targets must have the shape of logits without its last axis \(2,\)"):
        token_logprobs(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))


def test_temperature_logprobs(tiny):
    model, tok = tiny
    r = sample(model, tok, PROMPTS[:1], k=1, max_new_tokens=3, seed=0, temperature=0.5)
    lp = completion_logprobs(model, r.input_ids, r.attention_mask, r.prompt_length, temperature=0.5)
    with torch.no_grad():
        z = model(r.input_ids).logits[0, r.prompt_length - 1:-1].float() / 0.5
    want = torch.log_softmax(z, -1).gather(-1, r.completion_ids[0, :, None]).squeeze(-1)
    torch.testing.assert_close(lp[0].detach(), want, atol=1e-4, rtol=0)


def test_samples_follow_the_models_softmax():
    """First tokens are drawn from softmax(z), not a top-k truncation of it (transformers' default is top_k=50)."""
    model, tok = tiny_llama(seed=1)
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(25.0)  # peaked: top token ~0.47, ~0.37 of the mass outside the top 50
    n = 600
    r = sample(model, tok, ["Hi."], k=n, max_new_tokens=1, seed=0)
    first = r.completion_ids[:, 0]  # (n,)
    with torch.no_grad():
        ids, mask = encode_prompts(tok, ["Hi."])
        probs = torch.softmax(model(input_ids=ids, attention_mask=mask).logits[0, -1].float(), -1)  # (V,)
    top = probs.topk(50)
    outside = 1 - float(top.values.sum())  # mass top-k=50 sampling would never draw
    assert 0.05 < outside < 0.95, outside  # the test has power
    frac_out = float((~torch.isin(first, top.indices)).float().mean())
    assert abs(frac_out - outside) < 4 * (outside * (1 - outside) / n) ** 0.5
    for j in range(3):  # the most likely tokens come out at their probability
        p = float(top.values[j])
        assert abs(float((first == top.indices[j]).float().mean()) - p) < 4 * (p * (1 - p) / n) ** 0.5


def test_eos_ends_the_completion(tiny):
    model, tok = tiny
    eos = model.generation_config.eos_token_id
    calls = {"n": 0}

    def force_eos(module, args, out):  # rows 0 and 2 emit EOS at the second new token
        calls["n"] += 1
        if calls["n"] == 2:
            out = out.clone()
            out[[0, 2], -1, eos] = 1e4
        return out

    handle = model.lm_head.register_forward_hook(force_eos)
    try:
        r = sample(model, tok, PROMPTS[:2], k=2, max_new_tokens=5, seed=0)
    finally:
        handle.remove()
    want = torch.tensor([1, 1, 0, 0, 0], dtype=torch.float32)
    assert torch.equal(r.completion_mask[0], want) and torch.equal(r.completion_mask[2], want)
    assert r.completion_mask[1].all() and r.completion_mask[3].all()
    assert (r.completion_ids[0, 1:] == eos).all()  # EOS, then padding (pad = EOS)
    assert r.lengths.tolist() == [2, 5, 2, 5]


def test_position_ids_skip_left_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert position_ids(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_chat_prompts_end_with_the_reply_header(tiny):
    _, tok = tiny
    text = chat_prompts(tok, ["Hello"])[0]
    turn = tok.apply_chat_template([{"role": "user", "content": "Hello"}], tokenize=False)
    assert text.startswith(turn) and len(text) > len(turn)  # the user turn, then the reply header


def test_bad_input(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="prompts is empty"):
        sample(model, tok, [], k=2, max_new_tokens=4)
    with pytest.raises(TypeError, match="list of str"):
        sample(model, tok, "a single string", k=2, max_new_tokens=4)
    with pytest.raises(ValueError, match=r"prompts\[1\] is \d+ tokens long"):
        sample(model, tok, ["short", "word " * 2000], k=1, max_new_tokens=4)
    with pytest.raises(ValueError, match="k must be >= 1"):
        sample(model, tok, ["hi"], k=0, max_new_tokens=4)
    with pytest.raises(ValueError, match="temperature"):
        sample(model, tok, ["hi"], k=1, max_new_tokens=4, temperature=0.0)
    ids = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="prompt_length"):
        completion_logprobs(model, ids, torch.ones_like(ids), 5)
