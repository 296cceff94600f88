"""The trainer's DAPO filter (TrainConfig.group_filter) and the zero-variance log, on a tiny random Llama;
the run helpers of lesson 08 (llm.verifiable_runs)."""

import math

import pytest
import torch

from reinforce_edu.llm.models import tiny_llama
from reinforce_edu.llm.trainer import TrainConfig, Trainer
from reinforce_edu.llm.verifiable_runs import METHODS, RewardRecorder, first_last, lengths_by_outcome, method_config

PROMPTS = ["Say something nice.", "How is the weather?"]


def half_constant(completions, prompts, **kwargs):
    """Prompt 0: every answer 1.0 (a zero-variance group); prompt 1: the answer's length in characters / 20."""
    return [1.0 if p == PROMPTS[0] else len(c) / 20 for c, p in zip(completions, prompts)]


def constant(completions, **kwargs):
    return [1.0] * len(completions)


def make(tmp_path, reward_fn, **overrides):
    model, tok = tiny_llama(seed=0)
    settings = dict(reward="gold", prompts_per_step=2, samples_per_prompt=2, max_new_tokens=4, steps=1, beta=0.0,
                    learning_rate=1e-2, output_dir=str(tmp_path / "run"), progress=False, aggregation="sum")
    settings.update(overrides)
    return Trainer(TrainConfig(**settings), policy=model, tokenizer=tok, reward_fn=reward_fn, prompts=PROMPTS)


def test_dropping_zero_variance_groups_rescales_the_sum_loss_only(tmp_path):
    # RLOO, β = 0, "sum": the all-equal group has zero advantage, so dropping its 2 of 4 rows leaves the same
    # summed terms divided by B' = 2 instead of B = 4: the loss doubles, nothing else changes
    full = make(tmp_path / "a", half_constant).train_step()
    dropped = make(tmp_path / "b", half_constant, group_filter="drop_zero_variance").train_step()
    assert full["zero_variance_groups"] == dropped["zero_variance_groups"] == 0.5
    assert full["proxy_reward"] == dropped["proxy_reward"]  # logged over the whole batch
    assert abs(full["loss"]) > 0
    assert dropped["loss"] == pytest.approx(2 * full["loss"], rel=1e-5)


def test_a_step_with_only_zero_variance_groups_is_skipped(tmp_path):
    trainer = make(tmp_path, constant, group_filter="drop_zero_variance")
    before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}
    rec = trainer.train_step()
    assert rec["skipped"] == "every group has zero reward variance" and rec["zero_variance_groups"] == 1.0
    assert all(torch.equal(before[n], p) for n, p in trainer.policy.named_parameters())
    # without the filter the same step runs (its advantages are all zero)
    assert make(tmp_path / "c", constant).train_step()["skipped"] is None


def test_group_filter_config_checks():
    with pytest.raises(ValueError, match="unknown group_filter"):
        TrainConfig(group_filter="dapo")
    with pytest.raises(ValueError, match="group_filter='none'"):
        TrainConfig(method="ppo", group_filter="drop_zero_variance")
    assert TrainConfig().group_filter == "none"


def test_method_settings_are_valid_configs(tmp_path):
    base = TrainConfig(output_dir=str(tmp_path))
    for name in METHODS:
        cfg = method_config(name, base, seed=3)
        assert cfg.seed == 3 and cfg.output_dir.endswith(f"{name}_seed3")
    assert method_config("dr_grpo", base, 0).aggregation == "constant"
    assert method_config("dapo", base, 0).group_filter == "drop_zero_variance"
    with pytest.raises(ValueError, match="unknown method"):
        method_config("ppo", base, 0)


def test_recorder_and_lengths_by_outcome():
    _, tok = tiny_llama(seed=0)
    rec = RewardRecorder(lambda completions, **kw: [1.0, 0.0, 0.0])
    assert rec(["a b", "c", "d e f g"], prompts=["p"] * 3) == [1.0, 0.0, 0.0]
    (completions, rewards), = rec.calls
    n = [len(tok(c, add_special_tokens=False)["input_ids"]) for c in completions]
    right, wrong = lengths_by_outcome(tok, completions, rewards)
    assert right == n[0] and wrong == (n[1] + n[2]) / 2
    assert math.isnan(lengths_by_outcome(tok, ["x"], [0.0])[0])


def test_group_filter_is_refused_in_several_processes(monkeypatch):
    from reinforce_edu.llm.distributed import processes
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="group_filter runs in one process"):
        processes(TrainConfig(device="cpu", group_filter="drop_zero_variance"))


def test_first_last_skips_steps_without_a_value():
    log = [{"x": 1.0}, {"x": None}, {"x": 3.0}, {"x": 5.0}, {"x": math.nan}, {"x": 9.0}]
    assert first_last(log, "x") == (2.0, 7.0)  # (1 + 3) / 2, (5 + 9) / 2
    assert first_last(log, "x", n=1) == (1.0, 9.0)
    assert all(math.isnan(v) for v in first_last([{"x": None}] * 3, "x"))
    with pytest.raises(ValueError, match="fewer than n=3"):
        first_last(log[:2], "x")
