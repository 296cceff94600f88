"""The REINFORCE trainer (reinforce_edu/llm/trainer.py, train.py) on a tiny random Llama: what one update
changes, what a bad step must not change, clear errors on bad input, checkpoints, the CLI."""

import copy
import json
import math

import pytest
import torch

from reinforce_edu.llm.sampling import sample

from reinforce_edu.llm.models import tiny_llama
from reinforce_edu.llm.cli import build_parser, field_docs, parse_config
from reinforce_edu.llm.trainer import CHECKPOINT, TIME_KEYS, TrainConfig, Trainer, read_log

PROMPTS = ["Say something nice.", "How is the weather?", "Tell me about dogs.", "Describe a city.", "Hello!"]


def char_reward(completions, **kwargs):
    """A reward that varies between random completions: their length in characters / 20."""
    return [len(c) / 20 for c in completions]


def make(tmp_path, *, reward_fn=char_reward, prompts=PROMPTS, **overrides):
    model, tok = tiny_llama(seed=0)
    settings = dict(reward="gold", prompts_per_step=2, samples_per_prompt=2, max_new_tokens=4, steps=2,
                    learning_rate=1e-2, output_dir=str(tmp_path / "run"), progress=False)
    settings.update(overrides)
    return Trainer(TrainConfig(**settings), policy=model, tokenizer=tok, reward_fn=reward_fn, prompts=prompts)


def snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def same(a, b):
    return all(torch.equal(a[n], b[n]) for n in a)


def test_config_validation():
    with pytest.raises(ValueError, match="samples_per_prompt >= 2"):
        TrainConfig(baseline="rloo", samples_per_prompt=1)
    TrainConfig(baseline="running_mean", samples_per_prompt=1)  # fine without leave-one-out
    with pytest.raises(ValueError, match="unknown baseline"):
        TrainConfig(baseline="mean")
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig(learning_rate=-1.0)
    with pytest.raises(TypeError, match="steps must be a int"):
        TrainConfig(steps="10")
    with pytest.raises(ValueError, match="kl_estimator"):
        TrainConfig(kl_estimator="k4")
    with pytest.raises(ValueError, match="attention"):
        TrainConfig(attention="flash")


def test_attention_choice(tmp_path, monkeypatch):
    """"auto" on a CPU: plain-matmul attention for the scoring passes (policy and π_ref), the fused kernel for sampling."""
    import reinforce_edu.llm.evaluation as evaluation_module
    import reinforce_edu.llm.trainer as trainer_module
    seen = []

    def spy(model, *a, **k):
        seen.append(model.config._attn_implementation)
        return sample(model, *a, **k)

    monkeypatch.setattr(trainer_module, "sample", spy)
    monkeypatch.setattr(evaluation_module, "sample", spy)
    t = make(tmp_path, steps=1)
    assert t.policy.config._attn_implementation == "eager" and t.ref.config._attn_implementation == "eager"
    t.train_step()
    t.evaluate(PROMPTS[:1], proxy=False, model="reference")
    assert seen == ["sdpa", "sdpa"]
    assert t.policy.config._attn_implementation == "eager" and t.ref.config._attn_implementation == "eager"
    t = make(tmp_path, steps=1, attention="eager")
    t.train_step()
    assert seen[-1] == "eager" and t.ref.config._attn_implementation == "eager"


def test_one_update_changes_exactly_the_trainable_parameters(tmp_path):
    t = make(tmp_path, trainable_blocks=1, steps=1, dtype="bf16")  # "auto" may pick fp32 (tests/test_precision.py)
    names = set(t.trainable)
    assert names == {n for n, p in t.policy.named_parameters() if p.requires_grad}
    assert all(n.startswith("model.layers.1.") or n == "model.norm.weight" for n in names)
    frozen = [p for n, p in t.policy.named_parameters() if n not in names]
    assert all(p.dtype == torch.bfloat16 for p in frozen)  # stored in the compute dtype
    before, ref_before = snapshot(t.policy), snapshot(t.ref)
    t.train()
    after = snapshot(t.policy)
    for n in before:
        assert torch.equal(before[n], after[n]) != (n in names), n  # every trainable one moved, no other
    assert same(ref_before, snapshot(t.ref))  # π_ref stays frozen
    (rec,) = read_log(tmp_path / "run")
    assert rec["kl"] == 0.0  # step 1: the policy *is* the reference
    for key in ("proxy_reward", "gold_reward", "kl", "entropy", "length", "grad_norm", "step_time"):
        assert key in rec and math.isfinite(rec[key]), key
    assert rec["skipped"] is None and rec["n_skipped"] == 0
    assert rec["clipped"] == (rec["grad_norm"] > 1.0)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["trainable_blocks"] == 1
    assert (tmp_path / "run" / CHECKPOINT).is_file()


def test_nonfinite_logprobs_skip_the_update(tmp_path):
    t = make(tmp_path, baseline="running_mean")
    before = snapshot(t.policy)
    # NaN logits in the scoring pass only (sampling asks the output layer for one position at a time)
    handle = t.policy.lm_head.register_forward_hook(lambda m, a, out: out * float("nan") if out.shape[1] > 1 else out)
    rec = t.train_step()
    handle.remove()
    assert rec["skipped"] == "non-finite log-probs" and rec["n_skipped"] == 1
    assert same(before, snapshot(t.policy)) and t.optimizer.state == {}
    assert t.baseline.steps == 0  # the baseline did not see the step either
    assert t.train_step()["skipped"] is None  # the next step trains normally
    assert not same(before, snapshot(t.policy))


def test_nonfinite_loss_skips_the_update(tmp_path):
    def huge_reward(completions, **kwargs):  # finite rewards whose RLOO advantages overflow fp32
        return [3e38 if i % 2 else -3e38 for i in range(len(completions))]

    t = make(tmp_path, reward_fn=huge_reward)
    before = snapshot(t.policy)
    rec = t.train_step()
    assert rec["skipped"] == "non-finite loss" and rec["n_skipped"] == 1
    assert same(before, snapshot(t.policy)) and t.optimizer.state == {}


def test_nonfinite_gradient_skips_the_update(tmp_path):
    t = make(tmp_path, baseline="running_mean", steps=3)
    t.train_step()  # one good step, so the optimiser has state to protect
    weights, opt, base = snapshot(t.policy), copy.deepcopy(t.optimizer.state_dict()), t.baseline.state_dict()
    p = t.policy.model.layers[0].mlp.down_proj.weight
    handle = p.register_hook(lambda g: g * float("nan"))
    rec = t.train_step()
    handle.remove()
    assert rec["skipped"] == "non-finite gradient" and rec["grad_norm"] is None and rec["n_skipped"] == 1
    assert same(weights, snapshot(t.policy))
    assert t.baseline.state_dict() == base
    for k, v in t.optimizer.state_dict()["state"].items():
        assert all(torch.equal(v[s], opt["state"][k][s]) for s in v)


def test_reward_function_errors_surface_before_anything_is_written(tmp_path):
    def nan_reward(completions, **kwargs):
        return [float("nan")] * len(completions)

    def short_reward(completions, **kwargs):
        return [0.0] * (len(completions) - 1)

    for fn, match in ((nan_reward, "nan_reward.*non-finite"), (short_reward, "short_reward.*expected a list of exactly 4")):
        t = make(tmp_path, reward_fn=fn)
        before = snapshot(t.policy)
        with pytest.raises(ValueError, match=match):
            t.train()
        assert not (tmp_path / "run").exists()  # no log, no config, no checkpoint
        assert same(before, snapshot(t.policy))


def test_bad_prompts(tmp_path):
    with pytest.raises(ValueError, match="prompts is empty"):
        make(tmp_path, prompts=[])
    with pytest.raises(ValueError, match=r"prompts\[1\] is \d+ tokens long"):
        make(tmp_path, prompts=["fine", "word " * 1100])  # the tiny Llama's context is 1024
    assert not (tmp_path / "run").exists()


def test_resume_in_process_matches_an_uninterrupted_run(tmp_path):
    full = make(tmp_path / "a", steps=4, baseline="running_mean")
    full.train()
    part = make(tmp_path / "b", steps=2, baseline="running_mean")
    part.train()
    resumed = make(tmp_path / "b", steps=4, baseline="running_mean", resume=True)
    assert resumed.step == 2 and resumed.baseline.steps == 2
    resumed.train()
    strip = lambda recs: [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in recs]  # noqa: E731
    assert strip(read_log(tmp_path / "a" / "run")) == strip(read_log(tmp_path / "b" / "run"))
    assert same(snapshot(full.policy), snapshot(resumed.policy))


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    t = make(tmp_path, steps=1)
    t.train()
    path = tmp_path / "run" / CHECKPOINT
    good = path.read_bytes()

    def broken_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        t.save_checkpoint()
    assert path.read_bytes() == good  # the last good checkpoint survives


def test_resume_refuses_a_different_config(tmp_path):
    make(tmp_path, steps=1).train()
    with pytest.raises(ValueError, match="learning_rate"):
        make(tmp_path, steps=2, learning_rate=0.5, resume=True)


def test_evaluate_reports_mean_and_standard_error(tmp_path):
    t = make(tmp_path)
    ev = t.evaluate(PROMPTS[:3], k=2, seed=0)
    gold = torch.tensor(ev["gold_values"])
    assert len(ev["completions"]) == 6
    assert ev["gold"] == pytest.approx(gold.mean().item())
    assert ev["gold_se"] == pytest.approx(gold.std().item() / math.sqrt(6))
    assert ev == t.evaluate(PROMPTS[:3], k=2, seed=0)  # deterministic for a seed


def test_cli_flags_config_file_and_help(tmp_path):
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"learning_rate": 0.1, "steps": 7, "baseline": "none"}))
    cfg = parse_config(["--config", str(cfg_file), "--learning-rate", "0.2", "--resume"])
    assert (cfg.learning_rate, cfg.steps, cfg.baseline, cfg.resume) == (0.2, 7, "none", True)
    assert parse_config(["--progress", "false"]).progress is False
    cfg_file.write_text(json.dumps({"learning_rte": 0.1}))
    with pytest.raises(ValueError, match="learning_rte"):
        parse_config(["--config", str(cfg_file)])
    with pytest.raises(ValueError, match="samples_per_prompt >= 2"):
        parse_config(["--baseline", "rloo", "--samples-per-prompt", "1"])
    docs = field_docs(TrainConfig)
    assert set(docs) == set(TrainConfig.__dataclass_fields__)  # every field is documented
    assert "AdamW learning rate" in build_parser().format_help()


def test_prompt_stride_nests_the_prompts_of_methods_with_fewer_prompts(tmp_path):
    prompts = [f"Prompt number {i}." for i in range(7)]  # 7: the stream crosses epochs mid-step
    wide = make(tmp_path, prompts=prompts, prompts_per_step=4, samples_per_prompt=1, baseline="none", prompt_stride=4)
    narrow = make(tmp_path, prompts=prompts, prompts_per_step=2, samples_per_prompt=2, prompt_stride=4)
    plain = make(tmp_path, prompts=prompts, prompts_per_step=2, samples_per_prompt=2)
    for step in range(5):
        assert narrow.prompt_ids(step).tolist() == wide.prompt_ids(step)[:2].tolist()
    stream = torch.cat([plain.prompt_ids(step) for step in range(7)]).tolist()  # 14 positions, two epochs
    assert sorted(stream[:7]) == list(range(7)) and sorted(stream[7:]) == list(range(7))
    assert [narrow.prompt_ids(step).tolist() for step in range(3)] == [stream[0:2], stream[4:6], stream[8:10]]
    with pytest.raises(ValueError, match="prompt_stride"):
        TrainConfig(prompts_per_step=4, prompt_stride=2)
