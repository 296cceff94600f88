"""Integration: the real SmolLM2-135M-Instruct loads, writes text, and one REINFORCE update moves it.

A few seconds once the model cache exists (reinforce_edu.llm.models builds it on first use).
"""

import math

import torch

from reinforce_edu.llm.models import load_model
from reinforce_edu.llm.trainer import TrainConfig, Trainer, read_log


def char_reward(completions, **kwargs):
    """Length in characters / 50: a reward that varies between any two answers."""
    return [len(c) / 50 for c in completions]


def test_smollm2_generates_and_one_update_changes_the_weights(tmp_path):
    model, tok = load_model()
    config = TrainConfig(model="smollm2", reward="gold", prompts_per_step=2, samples_per_prompt=2,
                         max_new_tokens=8, steps=1, learning_rate=1e-4, trainable_blocks=1,
                         output_dir=str(tmp_path / "run"), progress=False, device="cpu")
    t = Trainer(config, policy=model, tokenizer=tok, reward_fn=char_reward,
                prompts=["Describe a sunny day in one sentence.", "What is your favourite food?"])
    r = t.rollout(t.prompts, 2, seed=0)
    assert sum(len(c.split()) for c in r.completions) >= 8  # real words, not noise
    last = t.trainable
    assert last and all(n.startswith("model.layers.29.") or n == "model.norm.weight" for n in last)
    before = {n: p.detach().clone() for n, p in t.policy.named_parameters()}
    t.train()
    (rec,) = read_log(tmp_path / "run")
    assert rec["skipped"] is None and rec["kl"] == 0.0 and math.isfinite(rec["grad_norm"])
    assert 0.5 < rec["entropy"] < 8  # a trained LM's per-token entropy, in nats
    for n, p in t.policy.named_parameters():
        assert torch.equal(before[n], p.detach()) != (n in last), n
