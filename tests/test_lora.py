"""LoRA (reinforce_edu/llm/lora.py) on a tiny random Llama, fp32, CPU: what the adapters start as, what their
gradient is, what a step changes, what the reference stays, what a saved adapter reloads as, resume.

The oracles are computed another way: the base model's own log-probs (a fresh copy, plain forward pass),
the full model's gradient after merging W' = W + (α/r)·B·A, and PEFT's / transformers' own loaders.
"""

import copy
import json

import pytest
import torch

from reinforce_edu.core.baselines import make_baseline
from reinforce_edu.core.losses import reinforce_loss
from reinforce_edu.llm.cli import main
from reinforce_edu.llm.logprobs import completion_logprobs
from reinforce_edu.llm.lora import WithoutAdapters, save_adapter, save_merged
from reinforce_edu.llm.models import tiny_llama
from reinforce_edu.llm.reward_model import RewardModel
from reinforce_edu.llm.sampling import position_ids
from reinforce_edu.llm.trainer import TIME_KEYS, TrainConfig, Trainer, read_log

PROMPTS = ["Say something nice.", "How is the weather?", "Tell me about dogs.", "Describe a city.", "Hello!"]
RANK, ALPHA = 4, 8.0


def char_reward(completions, **kwargs):
    """A reward that varies between random completions: their length in characters / 20."""
    return [len(c) / 20 for c in completions]


def make(tmp_path, **overrides):
    model, tok = tiny_llama(seed=0)
    settings = dict(reward="gold", prompts_per_step=2, samples_per_prompt=2, max_new_tokens=6, steps=2,
                    learning_rate=1e-2, output_dir=str(tmp_path / "run"), progress=False, dtype="fp32",
                    lora_rank=RANK, lora_alpha=ALPHA)
    settings.update(overrides)
    return Trainer(TrainConfig(**settings), policy=model, tokenizer=tok, reward_fn=char_reward, prompts=PROMPTS)


def base_model():
    """A fresh copy of the base weights, another object than the trainer's."""
    model, _ = tiny_llama(seed=0)
    model.set_attn_implementation("eager")  # the trainer's scoring kernel on a CPU
    return model


def plain_logprobs(model, r):
    """log π(y_t|·) from a plain forward pass over the whole rollout (no shared-prompt cache): (B, T)."""
    logits = model(input_ids=r.input_ids, attention_mask=r.attention_mask,
                   position_ids=position_ids(r.attention_mask)).logits.float()  # (B, L, V)
    z = logits[:, r.prompt_length - 1:-1]  # (B, T, V)
    return torch.log_softmax(z, dim=-1).gather(-1, r.completion_ids[..., None]).squeeze(-1)


def scored(trainer, model, r):
    with torch.no_grad():
        return completion_logprobs(model, r.input_ids, r.attention_mask, r.prompt_length, group_size=r.k)


def adapters(trainer):
    """{target module name: (A, B)} of the policy's adapters."""
    named = dict(trainer.policy.named_parameters())
    return {n.split(".lora_A.")[0]: (p, named[n.replace("lora_A", "lora_B")]) for n, p in named.items()
            if ".lora_A." in n}


def test_config_validation():
    with pytest.raises(ValueError, match="lora_rank"):
        TrainConfig(lora_rank=-1)
    with pytest.raises(ValueError, match="lora_alpha"):
        TrainConfig(lora_rank=4, lora_alpha=0.0)
    with pytest.raises(ValueError, match="lora_dropout"):
        TrainConfig(lora_rank=4, lora_dropout=1.0)
    with pytest.raises(ValueError, match="lora_target_modules"):
        TrainConfig(lora_rank=4, lora_target_modules=" , ")
    with pytest.raises(ValueError, match="trainable_blocks=2"):
        TrainConfig(lora_rank=4, trainable_blocks=2)
    with pytest.raises(TypeError, match="lora_rank must be a int"):
        TrainConfig(lora_rank=4.0)


def test_targets_that_match_nothing_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not found in the base model|matched no module"):
        make(tmp_path, lora_target_modules="no_such_layer")


def test_fresh_adapters_leave_the_model_exactly_the_base_model(tmp_path):
    """(a) B = 0: the policy's and the reference's first log-probs are the base model's, bit for bit."""
    t = make(tmp_path)
    assert isinstance(t.ref, WithoutAdapters)
    assert all(torch.count_nonzero(B) == 0 and torch.count_nonzero(A) > 0 for A, B in adapters(t).values())
    assert len(adapters(t)) == 2 * 7  # "all-linear": q, k, v, o, gate, up, down in each of the 2 blocks
    r = t.rollout(PROMPTS[:2], 2, seed=0)
    policy, ref = scored(t, t.policy, r), scored(t, t.ref, r)
    fresh = scored(t, base_model(), r)
    assert torch.equal(policy, fresh) and torch.equal(ref, fresh)  # + 0·x is exact
    assert torch.allclose(fresh, plain_logprobs(base_model(), r), atol=1e-5)  # another way to score, same numbers
    rec = t.train_step()
    assert rec["kl"] == 0.0  # step 1: the policy is the reference


def test_lora_gradient_is_the_full_gradient_projected_through_the_adapters(tmp_path):
    """(b) ∂L/∂B = (α/r)·G·Aᵀ and ∂L/∂A = (α/r)·Bᵀ·G, G = ∂L/∂W' of the merged model, on the same samples and loss."""
    t = make(tmp_path)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, B in adapters(t).values():  # B ≠ 0, so that ∂L/∂A is not trivially zero
            B.copy_(0.1 * torch.randn(B.shape, generator=gen))
    r = t.rollout(PROMPTS[:2], 2, seed=0)
    rewards = torch.tensor([0.3, -0.5, 1.0, 0.2])
    ref_logp = scored(t, t.ref, r)

    def loss(model):
        logp = completion_logprobs(model, r.input_ids, r.attention_mask, r.prompt_length, group_size=2)
        return reinforce_loss(logp, rewards, r.completion_mask, ref_logp=ref_logp, beta=0.1, kl_placement="loss",
                              baseline=make_baseline("leave_one_out"), group_size=2, aggregation="sum").loss

    loss(t.policy).backward()
    merged = copy.deepcopy(t.ref.peft_model).merge_and_unload()  # W' = W + (α/r)·B·A, a plain model
    merged.requires_grad_(True)
    loss(merged).backward()
    full = dict(merged.named_parameters())
    s = ALPHA / RANK
    for name, (A, B) in adapters(t).items():
        G = full[name + ".weight"].grad  # (out, in)
        for got, want in ((B.grad, s * G @ A.T), (A.grad, s * B.T @ G)):
            # same sums in another order, fp32: relative error ~1e-6; 1e-4 leaves room, a wrong formula is O(1)
            assert (got - want).norm() <= 1e-4 * want.norm() and want.norm() > 0, name


def test_a_step_changes_only_the_adapters_and_the_reference_stays_the_base_model(tmp_path):
    """(c) base weights bitwise unchanged, every adapter weight moved; (d) π_ref unchanged while π_θ moved."""
    t = make(tmp_path, steps=2)
    names = set(t.trainable)
    assert names == {n for n, p in t.policy.named_parameters() if p.requires_grad}
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    before = {n: p.detach().clone() for n, p in t.policy.named_parameters()}
    r = t.rollout(PROMPTS[2:4], 2, seed=1)
    ref_before, policy_before = scored(t, t.ref, r), scored(t, t.policy, r)
    t.train()  # 2 steps: A's gradient is 0 at step 1 (B = 0), so A moves at step 2
    for n, p in t.policy.named_parameters():
        assert torch.equal(before[n], p) != (n in names), n
    assert torch.equal(scored(t, t.ref, r), ref_before)
    assert torch.equal(scored(t, t.ref, r), scored(t, base_model(), r))
    assert (scored(t, t.policy, r) - policy_before).abs().max() > 1e-3
    assert all(p.requires_grad for n, p in t.policy.named_parameters() if n in names)  # re-enabled after each π_ref pass
    assert not any(p.requires_grad for p in t.ref.parameters())
    assert {n for n, _ in t.ref.named_parameters()} == set(before) - names  # the base weights only


def test_reward_model_on_the_reference_reads_the_base_models_features(tmp_path):
    """The reward model hooks a block of its backbone: through the view that block runs without adapters."""
    t = make(tmp_path, steps=2)
    t.train()
    pairs = (["Hello!", "Describe a city."], ["A lovely day.", "Busy and loud."])
    on_ref = RewardModel(t.ref, t.tokenizer, layer=1).features(*pairs)
    on_base = RewardModel(base_model(), t.tokenizer, layer=1).features(*pairs)
    on_policy = RewardModel(copy.deepcopy(t.policy), t.tokenizer, layer=1).features(*pairs)
    assert torch.equal(on_ref, on_base) and not torch.allclose(on_policy, on_base)
    assert all(p.requires_grad for n, p in t.policy.named_parameters() if n in set(t.trainable))


def test_dropout_acts_in_the_training_pass_only(tmp_path):
    t = make(tmp_path, lora_dropout=0.5)
    with torch.no_grad():
        for _, B in adapters(t).values():
            B.fill_(0.1)
    r = t.rollout(PROMPTS[:2], 2, seed=0)
    assert torch.equal(scored(t, t.policy, r), scored(t, t.policy, r))  # no grad: no dropout
    grad = [completion_logprobs(t.policy, r.input_ids, r.attention_mask, r.prompt_length).detach() for _ in range(2)]
    assert not torch.equal(grad[0], grad[1])  # training pass: a fresh dropout mask each time


def test_saved_adapter_and_merged_weights_reproduce_the_log_probs(tmp_path):
    """(e) PeftModel.from_pretrained(base, adapter) and AutoModelForCausalLM.from_pretrained(merged): same log π."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    t = make(tmp_path, steps=2)
    t.train()
    r = t.rollout(PROMPTS[:2], 2, seed=3)
    want = scored(t, t.policy, r)
    assert (want - scored(t, t.ref, r)).abs().max() > 1e-3  # the adapters matter
    loaded = PeftModel.from_pretrained(base_model(), str(save_adapter(t, tmp_path / "adapter"))).eval()
    merged = AutoModelForCausalLM.from_pretrained(str(save_merged(t, tmp_path / "merged"))).eval()
    merged.set_attn_implementation("eager")
    with torch.no_grad():
        for model in (loaded, merged):  # another scorer (a plain forward pass): fp32 rounding only
            assert torch.allclose(plain_logprobs(model, r), want, atol=1e-4)
    assert torch.equal(scored(t, t.policy, r), want)  # saving left the trainer's model as it was


def test_cli_writes_the_adapter(tmp_path):
    model, tok = tiny_llama(seed=0)
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "out"
    main(["--model", str(tmp_path / "model"), "--reward", "gold", "--prompts", str(tmp_path / "prompts.txt"),
          "--steps", "1", "--prompts-per-step", "2", "--samples-per-prompt", "2", "--max-new-tokens", "4",
          "--device", "cpu", "--dtype", "fp32", "--output-dir", str(out), "--progress", "false",
          "--lora-rank", "2", "--lora-alpha", "4", "--lora-target-modules", "q_proj,v_proj"])
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 2 and config["lora_alpha"] == 4 and set(config["target_modules"]) == {"q_proj", "v_proj"}
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("method", ["reinforce", "ppo"])
def test_resume_with_lora_matches_an_uninterrupted_run(tmp_path, method):
    """(f) The checkpoint holds the adapters (and the critic's adapters and head), optimiser, RNG: an exact resume."""
    opts = dict(baseline="running_mean", method=method)
    full = make(tmp_path / "a", steps=4, **opts)
    full.train()
    make(tmp_path / "b", steps=2, **opts).train()
    resumed = make(tmp_path / "b", steps=4, resume=True, **opts)
    assert resumed.step == 2
    resumed.train()
    strip = lambda recs: [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in recs]  # noqa: E731
    assert strip(read_log(tmp_path / "a" / "run")) == strip(read_log(tmp_path / "b" / "run"))
    for a, b in ((full.policy, resumed.policy), (full.critic, resumed.critic)):
        if a is not None:
            assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_ppo_critic_trains_its_own_adapters_and_head(tmp_path):
    t = make(tmp_path, method="ppo", steps=2)
    train = {n for n, p in t.critic.named_parameters() if p.requires_grad}
    assert train == {n for n in train if ".lora_" in n or n.startswith("head.")} and "head.weight" in train
    assert len(train) == len(t.trainable) + 2  # the same targets as the policy, plus the head
    before = {n: p.detach().clone() for n, p in t.critic.named_parameters()}
    t.train()
    for n, p in t.critic.named_parameters():
        if n not in train:
            assert torch.equal(before[n], p), n
    assert any(not torch.equal(before[n], p) for n, p in t.critic.named_parameters() if ".lora_B." in n)
