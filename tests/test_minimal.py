"""reinforce_edu/llm/minimal.py, the one-file RLOO loop, against the library's full trainer on a tiny random Llama.

The oracle: from the very same samples, one step of `minimal` and one step of `Trainer` give the same loss,
advantages, gradient and updated weights.
"""

import copy
import dataclasses
import math
import sys
import types

import pytest
import torch

from reinforce_edu.llm import minimal


from reinforce_edu.core.losses import reinforce_loss  # noqa: E402  what Trainer._train_step calls
from reinforce_edu.llm.logprobs import completion_logprobs  # noqa: E402
from reinforce_edu.llm.models import tiny_llama  # noqa: E402
from reinforce_edu.llm.trainer import TrainConfig, Trainer  # noqa: E402

PROMPTS = ["Say something nice.", "How is the weather?", "Tell me about dogs.", "Describe a city.", "Hello!"]


def char_reward(completions, **kwargs):
    """A reward that varies between random completions: their length in characters / 20."""
    return [len(c) / 20 for c in completions]


def trainer_for(tmp_path, k: int, **overrides) -> Trainer:
    model, tok = tiny_llama(seed=0)
    settings = dict(reward="gold", prompts_per_step=2, samples_per_prompt=k, max_new_tokens=4, baseline="rloo",
                    beta=0.05, kl_estimator="k1", kl_placement="reward", aggregation="sum", dtype="fp32",
                    device="cpu", trainable_blocks=0, learning_rate=1e-3, max_grad_norm=1.0, keep_freed_memory=False,
                    progress=False, output_dir=str(tmp_path / "run"))
    settings.update(overrides)
    return Trainer(TrainConfig(**settings), policy=model, tokenizer=tok, reward_fn=char_reward, prompts=PROMPTS)


def stop_early(rollout, row: int, n: int, tokenizer):
    """The rollout with sample `row` ended by EOS at its n-th token (padded with EOS after, as sampling does)."""
    ids, mask, L0 = rollout.input_ids.clone(), rollout.completion_mask.clone(), rollout.prompt_length
    ids[row, L0 + n - 1:] = tokenizer.eos_token_id
    mask[row, n:] = 0
    texts = tokenizer.batch_decode([y[m > 0] for y, m in zip(ids[:, L0:], mask)], skip_special_tokens=True)
    return dataclasses.replace(rollout, input_ids=ids, completion_mask=mask, completions=texts)


def eos_prone(model, tokenizer, strength: float = 7.5):
    """The model with its EOS logit raised (tied embeddings: its EOS row points along the mean hidden state)."""
    ids = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        h = model.base_model(**ids).last_hidden_state.reshape(-1, model.config.hidden_size).mean(dim=0)  # (H,)
        model.get_output_embeddings().weight[tokenizer.eos_token_id] = strength * h / h.norm() ** 2
    return model


@pytest.mark.parametrize("k, temperature", [(2, 1.0), (4, 0.7)])
def test_one_step_matches_the_trainer(tmp_path, one_thread, k, temperature):
    # a max_grad_norm the gradient exceeds: the clipping is compared too
    trainer = trainer_for(tmp_path, k, max_grad_norm=0.05, temperature=temperature)
    cfg = trainer.config
    with torch.no_grad():  # move π_θ away from π_ref, so that the KL term is not zero
        noise = torch.Generator().manual_seed(1)
        for p in trainer.policy.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=noise))
    policy, ref = copy.deepcopy(trainer.policy), copy.deepcopy(trainer.ref)  # minimal's copies, before the step
    assert all(p.dtype == torch.float32 for p in [*policy.parameters(), *ref.parameters()])

    # the same samples and rewards for both sides
    ids = trainer.prompt_ids(0)
    r = trainer.rollout([trainer.prompts[i] for i in ids], k, seed=123)
    r = stop_early(stop_early(r, 0, 1, trainer.tokenizer), k + 1, 2, trainer.tokenizer)  # exercise the mask
    rewards, _ = trainer.score(r)  # (B,)
    mask = r.completion_mask  # (B, T)
    assert mask[0].sum() == 1 and mask[k + 1].sum() == 2 and mask.shape[1] > 2

    # the trainer: its log-probs and loss exactly as Trainer._train_step makes them, then its update
    with torch.no_grad(), trainer.autocast():
        lib_ref = completion_logprobs(trainer.ref, r.input_ids, r.attention_mask, r.prompt_length,
                                      temperature=cfg.temperature, group_size=k)
    with trainer.autocast():
        lib_logp = completion_logprobs(trainer.policy, r.input_ids, r.attention_mask, r.prompt_length,
                                       temperature=cfg.temperature, group_size=k)
    out = reinforce_loss(lib_logp, rewards, mask, ref_logp=lib_ref, beta=cfg.beta, kl_estimator=cfg.kl_estimator,
                         kl_placement=cfg.kl_placement, baseline=trainer.baseline, group_size=k, prompts=ids,
                         aggregation=cfg.aggregation, advantage_scale=cfg.advantage_scale)
    lib_grads = torch.autograd.grad(out.loss, trainer.params, retain_graph=True)
    lib_norm, reason = trainer._apply(out.loss)
    assert reason is None

    # minimal, on its own copies
    with torch.no_grad():
        ref_logp = minimal.completion_logprobs(ref, r.input_ids, r.attention_mask, r.prompt_length, cfg.temperature)
    logp = minimal.completion_logprobs(policy, r.input_ids, r.attention_mask, r.prompt_length, cfg.temperature)
    loss, advantages, _ = minimal.rloo_loss(logp, ref_logp, rewards, mask, k, cfg.beta)
    params = list(policy.parameters())
    grads = torch.autograd.grad(loss, params, retain_graph=True)
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    norm = minimal.update(policy, optimizer, loss, cfg.max_grad_norm)

    # the loss function alone, on the trainer's own log-probs: the same number
    same_inputs, _, _ = minimal.rloo_loss(lib_logp, lib_ref, rewards, mask, k, cfg.beta)
    torch.testing.assert_close(same_inputs, out.loss, rtol=1e-6, atol=0)
    # the whole step. The two scoring passes round differently (the trainer runs each prompt once and repeats
    # its key/value cache k times): log-probs agree to about one ulp, and the loss, a sum of terms A·Σ_t log π
    # that cancel, to a small fraction of the size of those terms
    assert out.kl.abs().max() > 1e-4  # π_θ ≠ π_ref: the KL term is exercised
    torch.testing.assert_close(logp, lib_logp, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ref_logp, lib_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(advantages[:, None] * mask, out.advantages, rtol=1e-5, atol=1e-6)
    terms = (advantages.abs() * (logp.detach() * mask).sum(dim=1).abs()).sum() / len(advantages)
    torch.testing.assert_close(loss, out.loss, rtol=0, atol=1e-5 * terms.item())
    assert len(grads) == len(lib_grads) == len(params)
    for g, lib_g in zip(grads, lib_grads):
        torch.testing.assert_close(g, lib_g, rtol=1e-5, atol=1e-5 * lib_g.abs().max().item())
    assert norm > cfg.max_grad_norm and math.isclose(norm, lib_norm, rel_tol=1e-5)
    for p, lib_g in zip(params, lib_grads):  # the clipped gradient minimal stepped with
        torch.testing.assert_close(p.grad, lib_g * cfg.max_grad_norm / lib_norm, rtol=1e-5,
                                   atol=1e-5 * lib_g.abs().max().item() * cfg.max_grad_norm / lib_norm)
    # the weights after the AdamW step. Its first update is lr·g/(|g| + ε) elementwise, whose rounding grows
    # where |g| ≈ ε = 1e-8; a wrong step would be off by about lr
    for p, lib_p in zip(params, trainer.params):
        torch.testing.assert_close(p, lib_p, rtol=0, atol=1e-2 * cfg.learning_rate)


def test_leave_one_out_equals_a_loop(one_thread):
    g = torch.Generator().manual_seed(0)
    P, k, T, beta = 3, 4, 5, 0.1
    logp, ref_logp = -torch.rand(P * k, T, generator=g), -torch.rand(P * k, T, generator=g)
    mask = (torch.rand(P * k, T, generator=g) > 0.3).float()
    rewards = torch.randn(P * k, generator=g)
    loss, advantages, _ = minimal.rloo_loss(logp.requires_grad_(), ref_logp, rewards, mask, k, beta)
    R = [rewards[n].item() - beta * sum((logp[n, t].item() - ref_logp[n, t].item()) * mask[n, t].item()
                                        for t in range(T)) for n in range(P * k)]
    expected_loss = 0.0
    for i in range(P):
        for j in range(k):
            n = i * k + j
            b = sum(R[i * k + m] for m in range(k) if m != j) / (k - 1)
            assert advantages[n].item() == pytest.approx(R[n] - b, abs=1e-6)
            expected_loss -= (R[n] - b) * sum(logp[n, t].item() * mask[n, t].item() for t in range(T)) / (P * k)
    assert loss.item() == pytest.approx(expected_loss, abs=1e-6)
    loss.backward()  # the KL in R is detached: ∂L/∂log π_t = −A·m_t / B
    torch.testing.assert_close(logp.grad, -advantages.detach()[:, None] * mask / (P * k))


def test_sample_draws_from_the_untruncated_distribution(one_thread):
    model, tok = tiny_llama(seed=0)
    ids, attn, L0, mask = minimal.sample(model, tok, PROMPTS[:2], 4, 6, temperature=0.7, seed=1)
    again = minimal.sample(model, tok, PROMPTS[:2], 4, 6, temperature=0.7, seed=1)
    assert torch.equal(ids, again[0]) and torch.equal(mask, again[3])  # seeded
    assert ids.shape == attn.shape and mask.shape == (8, ids.shape[1] - L0) and L0 == again[2]
    assert torch.equal(ids[0, :L0], ids[3, :L0]) and torch.equal(attn[:, L0:], torch.ones_like(mask))
    logp = minimal.completion_logprobs(model, ids, attn, L0, 0.7)  # (B, T)
    assert logp.shape == mask.shape and torch.isfinite(logp).all() and (logp < 0).all()
    with torch.no_grad():  # the rank of each sampled token among the V logits: top-k sampling keeps ranks < k
        z = model(input_ids=ids, attention_mask=attn).logits[:, L0 - 1:-1]  # (B, T, V)
    ranks = (z > z.gather(-1, ids[:, L0:, None])).sum(dim=-1)  # (B, T)
    assert ranks[mask > 0].max() > 1000  # a near-uniform random model: the whole vocabulary is drawn from
    # an EOS-prone model: rows end early; the mask is 1 through the first EOS, 0 after
    ids, attn, L0, mask = minimal.sample(eos_prone(model, tok), tok, PROMPTS[:2], 4, 6, seed=1)
    assert (mask.sum(dim=1) < mask.shape[1]).any()
    for y, m in zip(ids[:, L0:], mask):
        n = int(m.sum())
        assert m[:n].all() and not m[n:].any()
        assert (y[:n - 1] != tok.eos_token_id).all() and (n == len(y) or y[n - 1] == tok.eos_token_id)


def test_train_changes_the_weights(one_thread, capsys):
    model, tok = tiny_llama(seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    s = minimal.Settings(steps=2, prompts_per_step=2, samples_per_prompt=2, max_new_tokens=4, learning_rate=1e-2)
    history = minimal.train(s, model=model, tokenizer=tok, reward_fn=char_reward, prompts=PROMPTS)
    assert [h["step"] for h in history] == [1, 2] and not any(h["skipped"] for h in history)
    assert all(math.isfinite(h["loss"]) and math.isfinite(h["grad_norm"]) for h in history)
    assert history[0]["kl"] == 0.0 and history[1]["kl"] != 0.0  # π_θ = π_ref until the first update
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert capsys.readouterr().out.count("\n") == 2  # one JSON line per step


def test_main_runs_from_the_command_line(tmp_path, one_thread, monkeypatch):
    model, tok = tiny_llama(seed=0)
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    monkeypatch.setitem(sys.modules, "my_rewards", types.SimpleNamespace(char_reward=char_reward))
    out = tmp_path / "out"
    history = minimal.main(["--model", str(tmp_path / "tiny"), "--prompts", str(tmp_path / "prompts.txt"),
                            "--reward", "my_rewards:char_reward", "--steps", "2", "--prompts-per-step", "2",
                            "--samples_per_prompt", "2", "--max-new-tokens", "3", "--learning-rate", "0.01",
                            "--output", str(out)])
    assert len(history) == 2 and all(math.isfinite(h["loss"]) for h in history)
    assert (out / "metrics.jsonl").read_text().count("\n") == 2 and (out / "config.json").is_file()
    trained = type(model).from_pretrained(out)
    assert any(not torch.equal(p, q) for p, q in zip(trained.parameters(), model.parameters()))


def test_help_and_the_course_model(monkeypatch, capsys):
    with pytest.raises(SystemExit):
        minimal.main(["--help"])
    assert "k: completions per prompt (B = P·k rows)" in " ".join(capsys.readouterr().out.split())
    from reinforce_edu.llm import models  # where "smollm2" comes from
    tiny = tiny_llama(seed=0)
    monkeypatch.setattr(models, "load_model", lambda name: (name, tiny)[1])
    model, tok = minimal.load_model("smollm2")
    assert model is tiny[0] and tok.pad_token is not None


def test_bad_input_raises_clear_errors():
    logp = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="k must be an int >= 2"):
        minimal.rloo_loss(logp, logp, torch.zeros(4), torch.ones(4, 3), 1, 0.1)
    with pytest.raises(ValueError, match="k must be an int >= 2.*B=4"):
        minimal.rloo_loss(logp, logp, torch.zeros(4), torch.ones(4, 3), 3, 0.1)
    with pytest.raises(ValueError, match="ref_logp must have shape"):
        minimal.rloo_loss(logp, torch.zeros(4, 2), torch.zeros(4), torch.ones(4, 3), 2, 0.1)
    with pytest.raises(ValueError, match="rewards must have shape"):
        minimal.rloo_loss(logp, logp, torch.zeros(3), torch.ones(4, 3), 2, 0.1)
    with pytest.raises(ValueError, match="mask must have shape"):
        minimal.rloo_loss(logp, logp, torch.zeros(4), torch.ones(4, 2), 2, 0.1)
    with pytest.raises(ValueError, match="samples_per_prompt must be >= 2"):
        minimal.Settings(samples_per_prompt=1)
    with pytest.raises(TypeError, match="steps must be of type int"):
        minimal.Settings(steps="3")
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        minimal.Settings(temperature=0.0)
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        minimal.Settings(beta=float("nan"))
    with pytest.raises(SystemExit):
        minimal.main(["--steps", "two"])
    with pytest.raises(ValueError, match="prompt_length=3"):
        minimal.completion_logprobs(None, torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3), 3)


def test_a_non_finite_loss_or_gradient_never_steps(one_thread, capsys):
    model, _ = tiny_llama(seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    assert minimal.update(model, optimizer, torch.tensor(float("nan")), 1.0) is None
    w = next(model.parameters())
    loss = torch.sqrt((w - w.detach()) ** 2).sum()  # 0, but its gradient is ∞ · 0 = NaN
    assert torch.isfinite(loss) and minimal.update(model, optimizer, loss, 1.0) is None
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert capsys.readouterr().out.count("skipping the update") == 2
