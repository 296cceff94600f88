"""Any causal LM: the library on tiny GPT-2 and Qwen2 models beside tiny_llama (reinforce_edu/llm/architecture.py).

GPT-2 has learned absolute position embeddings, Conv1D linear layers and `transformer.h` / `ln_f`;
Qwen2 is Llama-like with biased q/k/v projections. Oracles: the left-padded, KV-cached sampling and
scoring paths give the logits of each row run alone without padding; the reward model's early exit
gives the full pass's hidden states. End to end: each model saved to a folder, trained from that path
(REINFORCE and PPO, some blocks or all, a module:function reward or a head trained for that backbone by
scripts/train_reward_model.py), and a head of another backbone refused with the command that makes one.
"""

import importlib.util
import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import reinforce_edu.llm.sampling as sampling
from reinforce_edu.llm.architecture import describe, final_norm, hidden_size, transformer_blocks
from reinforce_edu.llm.config import TrainConfig
from reinforce_edu.llm.freeze import trainable_parameter_names
from reinforce_edu.llm.logprobs import completion_logprobs
from reinforce_edu.llm.models import load_model, tiny_model
from reinforce_edu.llm.reward_model import RewardModel, load_reward_model, read_head
from reinforce_edu.llm.rewards import make_reward_fn
from reinforce_edu.llm.trainer import Trainer, read_log

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"llama": 32, "gpt2": 32, "qwen2": 48}  # hidden sizes: Qwen2's differs, so heads cannot fit both
PROMPTS = ["Hi.", "Tell me about the weather on a long rainy Monday morning.", "Describe a dog."]


def char_reward(completions, **kwargs):
    """A reward that varies between random completions: their length in characters / 20."""
    return [len(c) / 20 for c in completions]


def tiny(arch: str, seed: int = 0):
    return tiny_model(arch, seed, hidden_size=SIZES[arch], n_layers=3)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Each tiny model saved as a transformers folder; GPT-2's tokenizer without a chat template (plain text)."""
    out = {}
    for arch in ("gpt2", "qwen2"):
        model, tok = tiny(arch)
        if arch == "gpt2":
            tok.chat_template = None
        out[arch] = tmp_path_factory.mktemp(arch)
        model.save_pretrained(out[arch])
        tok.save_pretrained(out[arch])
    return out


@pytest.fixture(scope="module")
def heads(folders, tmp_path_factory):
    """A reward head per backbone, made by `scripts/train_reward_model.py --model PATH` at a tiny budget."""
    spec = importlib.util.spec_from_file_location("train_reward_model", ROOT / "scripts" / "train_reward_model.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    threads, out = torch.get_num_threads(), {}
    for arch, path in folders.items():
        out[arch] = tmp_path_factory.mktemp("heads") / f"{arch}.safetensors"
        assert script.main(["--model", str(path), "--out", str(out[arch]), "--steps", "30", "--max-pairs", "24"]) == 0
    torch.set_num_threads(threads)
    with pytest.raises(SystemExit):  # another model's head never overwrites the shipped one
        script.main(["--model", str(folders["gpt2"])])
    return out


# --- where each family keeps its parts -----------------------------------------------------------

def test_blocks_norm_and_width_of_each_family():
    llama, _ = tiny("llama")
    gpt2, _ = tiny("gpt2")
    qwen2, _ = tiny("qwen2")
    assert transformer_blocks(llama) is llama.model.layers and final_norm(llama) is llama.model.norm
    assert transformer_blocks(qwen2) is qwen2.model.layers and final_norm(qwen2) is qwen2.model.norm
    assert transformer_blocks(gpt2) is gpt2.transformer.h and final_norm(gpt2) is gpt2.transformer.ln_f
    assert [hidden_size(m) for m in (llama, gpt2, qwen2)] == [32, 32, 48]
    assert describe(gpt2) == "gpt2, 3 layers, vocabulary 49152"
    names = trainable_parameter_names(gpt2, 1)
    assert set(names) == {f"transformer.h.2.{n}" for n, _ in gpt2.transformer.h[2].named_parameters()} | {
        "transformer.ln_f.weight", "transformer.ln_f.bias"}
    with pytest.raises(ValueError, match="trainable_blocks=4 but the model has 3 blocks"):
        trainable_parameter_names(qwen2, 4)

    class OddLM(nn.Module):  # a causal LM whose blocks live where no known layout looks
        def __init__(self):
            super().__init__()
            self.stack = nn.ModuleList([nn.Linear(4, 4)])

    with pytest.raises(ValueError, match="OddLM: unknown model layout"):
        transformer_blocks(OddLM())
    with pytest.raises(ValueError, match="OddLM"):
        trainable_parameter_names(OddLM(), 1)
    assert trainable_parameter_names(OddLM(), 0) == ["stack.0.weight", "stack.0.bias"]  # all: no layout needed


# --- oracles: left padding, positions and the KV cache ---------------------------------------------

def _alone(model, ids):
    """Logits of one unpadded row, full forward pass, no cache: (L_i,) -> (L_i, V)."""
    with torch.no_grad():
        return model(ids[None], use_cache=False).logits[0].float()


@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2"])
def test_padded_cached_paths_match_each_row_alone(arch, monkeypatch, one_thread):
    """Sampling's logits and completion_logprobs(group_size=k) equal those of each row run alone, unpadded.

    GPT-2 adds a learned embedding per position: a row whose positions counted its left padding would
    see other embeddings and other logits. fp32; 1e-4 covers the summation order of padded batches.
    """
    model, tok = tiny(arch)
    seen = []
    draw = sampling.sample_categorical
    monkeypatch.setattr(sampling, "sample_categorical", lambda z, rows=None: (seen.append(z.clone()), draw(z, rows))[1])
    r = sampling.sample(model, tok, PROMPTS, k=2, max_new_tokens=6, seed=0)
    logp = completion_logprobs(model, r.input_ids, r.attention_mask, r.prompt_length, group_size=2)  # (B, T)
    assert r.attention_mask[0, 0] == 0  # the short prompt is padded on the left
    for i in range(r.input_ids.shape[0]):
        keep = r.attention_mask[i].bool()
        ids = r.input_ids[i][keep]  # (L_i,) without padding
        start = r.prompt_length - int((~keep).sum())
        T = int(r.completion_mask[i].sum())  # tokens up to and including EOS
        z = _alone(model, ids)[start - 1:start - 1 + T]  # (T, V): the logits that predict y_1 .. y_T
        torch.testing.assert_close(torch.stack([s[i] for s in seen[:T]]), z, atol=1e-4, rtol=0)
        want = torch.log_softmax(z, -1).gather(-1, ids[start:start + T, None]).squeeze(-1)  # (T,)
        torch.testing.assert_close(logp[i, :T].detach(), want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("arch", ["gpt2", "qwen2"])
def test_reward_model_early_exit_matches_hidden_states(arch):
    """Oracle: features after layer L (the forward pass stopped by a hook on block L) = hidden_states[L]."""
    model, tok = tiny(arch)
    prompts, answers = ["Describe a sunny day.", "Hi"], ["Bright and warm.", "Hello to you, friend."]
    rm = RewardModel(model, tok)
    assert rm.layer == 2  # the middle of 3 layers, n // 2 + 1: the hook path, not the last hidden state
    expected = []
    for p, a in zip(prompts, answers):  # one unpadded row at a time, the plain way
        seq, n_answer = rm._encode(p, a)
        with torch.no_grad():
            hs = model(torch.tensor([seq]), output_hidden_states=True).hidden_states[2]  # (1, T, H)
        expected.append(hs[0, -n_answer:].mean(0))
    torch.testing.assert_close(rm.features(prompts, answers), torch.stack(expected), atol=1e-5, rtol=1e-5)


# --- end to end: a model folder, the trainer, a reward for it ----------------------------------------

def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


CASES = [("reinforce", 1, "function"), ("reinforce", 0, "head"), ("ppo", 1, "head"), ("ppo", 0, "function")]


@pytest.mark.parametrize("arch", ["gpt2", "qwen2"])
@pytest.mark.parametrize("method,blocks,reward", CASES)
def test_trainer_from_a_model_folder(arch, method, blocks, reward, folders, heads, tmp_path, one_thread):
    path = folders[arch]
    fresh, tok = load_model(str(path))
    assert (tok.chat_template is None) == (arch == "gpt2") and tok.pad_token is not None
    cfg = TrainConfig(model=str(path), reward=str(heads[arch]) if reward == "head" else f"{__name__}:char_reward",
                      method=method, trainable_blocks=blocks, dtype="bf16" if blocks else "fp32",
                      prompts_per_step=2, samples_per_prompt=2, max_new_tokens=4, steps=2, learning_rate=1e-2,
                      output_dir=str(tmp_path / "run"), progress=False)
    t = Trainer(cfg)
    names = set(trainable_parameter_names(fresh, blocks))
    assert names == {n for n, p in t.policy.named_parameters() if p.requires_grad}
    store = torch.bfloat16 if blocks else torch.float32
    assert all(p.dtype == store for n, p in t.policy.named_parameters() if n not in names)  # compute dtype
    matmuls = [m for m in t.ref.base_model.modules() if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"]
    assert matmuls and all(m.weight.dtype == store for m in matmuls)  # π_ref's blocks: Linear and GPT-2's Conv1D
    critic = _params(t.critic) if method == "ppo" else {}
    history = t.train()
    after, ref = _params(t.policy), _params(t.ref)
    for n, p in fresh.named_parameters():
        w = p.detach().to(after[n].dtype)
        assert torch.equal(w, after[n]) != (n in names), n  # every trainable one moved, no other
        assert torch.equal(w.to(ref[n].dtype), ref[n]), n  # π_ref is the model as loaded
    if method == "ppo":
        moved = {n for n, p in t.critic.named_parameters() if not torch.equal(p, critic[n])}
        assert moved == {n for n, p in t.critic.named_parameters() if p.requires_grad} and "head.weight" in moved
    log = read_log(tmp_path / "run")
    assert [rec["step"] for rec in log] == [1, 2] and history == log
    for rec in log:
        assert rec["skipped"] is None and math.isfinite(rec["loss"]) and math.isfinite(rec["proxy_reward"])


def test_a_head_of_another_backbone_is_refused_with_the_command(folders, heads):
    gpt2, tok = load_model(str(folders["gpt2"]))
    _, meta = read_head(heads["gpt2"])
    assert meta["backbone"] == "gpt2, 3 layers, vocabulary 49152" and meta["layer"] == "2"
    with pytest.raises(ValueError, match=r"reward_head.safetensors was trained on 576-dim features of layer 16 of "
                                         r"a llama, 30 layers.*hidden size 32.*train_reward_model.py --model "
                                         + re.escape(str(folders["gpt2"]))):
        Trainer(TrainConfig(model=str(folders["gpt2"]), reward="reward_model", progress=False))
    with pytest.raises(ValueError, match="48-dim features of layer 2 of a qwen2, 3 layers.*--reward gold"):
        make_reward_fn(str(heads["qwen2"]), gpt2, tok)
    llama, llama_tok = tiny("llama")  # the same width (32) as GPT-2's head, another backbone
    with pytest.raises(ValueError, match=r"32-dim features of layer 2 of a gpt2, 3 layers.*this model \(llama"
                                         r".*--model PATH"):  # a model built in memory: no folder to name
        load_reward_model(llama, llama_tok, path=heads["gpt2"])
    with pytest.raises(FileNotFoundError, match="train_reward_model.py --model PATH --out"):
        make_reward_fn(str(folders["gpt2"] / "missing.safetensors"), gpt2, tok)
    fn = make_reward_fn(str(heads["gpt2"]), gpt2, tok)
    assert len(fn(["Nice!", "Bad."], prompts=["Hi", "Hi"])) == 2


def test_cli_trains_a_model_folder_with_its_head(folders, heads, tmp_path, one_thread):
    """`python -m reinforce_edu.train --model PATH --reward HEAD.safetensors`: the same entry point as the CLI."""
    from reinforce_edu.llm.cli import main
    from reinforce_edu.llm.sampling import encode_prompts
    path = folders["gpt2"]
    t = main(["--model", str(path), "--reward", str(heads["gpt2"]), "--steps", "1", "--prompts-per-step", "2",
              "--samples-per-prompt", "2", "--max-new-tokens", "4", "--output-dir", str(tmp_path / "run"),
              "--progress", "false"])
    (rec,) = read_log(tmp_path / "run")
    assert rec["skipped"] is None and math.isfinite(rec["loss"]) and t.config.model == str(path)
    ids, _ = encode_prompts(t.tokenizer, ["Hi."])  # no chat template: the prompt as plain text
    assert ids[0].tolist() == t.tokenizer("Hi.")["input_ids"]
    with pytest.raises(ValueError, match="architecture must be one of"):
        tiny_model("bert")
