"""The trainer sharded by FSDP2 in 2 processes (torchrun / accelerate launch, gloo, CPU) is the 1-process run.

Oracle: the 1-process run with the same global batch, as in tests/test_distributed.py (same tiny random Llama,
prompts, reward and flags; tolerances explained there: samples exact, losses and weights to float rounding).
Runs: `--shard full` under torchrun; `configs/accelerate/fsdp_zero2.yaml` under `accelerate launch` (the trainer
must read shard="grad_op" from it); each resumed in the other process count. That the weights really are split
is checked on the trainer itself: each rank holds about half of every parameter. Without the ×N after FSDP's
gradient mean (llm.distributed.reduce_gradients), step 2's loss differs.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reinforce_edu.llm.distributed import processes
from reinforce_edu.llm.models import tiny_llama
from reinforce_edu.llm.sharding import TiedHead, check_shardable, shard_mode
from reinforce_edu.llm.trainer import TrainConfig, read_log
from test_distributed import (ROOT, _assert_same_run, _assert_same_weights, _one, _ranks, _two, _weights, gloo,
                              workspace)

HOLDINGS = '''
import json, os, sys
import torch
from reinforce_edu.llm.models import load_model
from reinforce_edu.llm.trainer import Trainer, TrainConfig
policy, tok = load_model(sys.argv[1])
t = Trainer(TrainConfig(device="cpu", dtype="fp32", prompts_per_step=2, shard=sys.argv[2], progress=False),
            policy=policy, tokenizer=tok, reward_fn=lambda completions, **kw: [0.0] * len(completions),
            prompts=["a", "b"])
local = lambda m: sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in m.parameters())
whole = sum(p.numel() for p in load_model(sys.argv[1])[0].parameters())
held = {"rank": t.dist.rank, "policy": local(t.policy), "ref": local(t.ref), "whole": whole}
with open(os.path.join(sys.argv[3], f"holds{t.dist.rank}.json"), "w") as f:  # a file per rank: no shared pipe
    json.dump(held, f)
'''


ACCELERATE_ZERO2 = [str(Path(sys.executable).with_name("accelerate")), "launch", "--config_file",
                    str(ROOT / "configs" / "accelerate" / "fsdp_zero2.yaml"), "--num_processes", "2",
                    "--main_process_port", "0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """one: 1 process to 3, resumed to 6. full: 2 sharded to 3. zero2: accelerate's fsdp_zero2.yaml to 3.
    full->1, 1->full: resumed in the other process count."""
    with workspace(tmp_path_factory.mktemp("shard")) as tmp:
        _one(tmp, "one", 3)
        shutil.copytree(tmp / "one", tmp / "1->full")
        shutil.copytree(tmp / "one", tmp / "one@3")
        _one(tmp, "one", 6, "--resume")
        _two(tmp, "full", 3, "--shard", "full")
        shutil.copytree(tmp / "full", tmp / "full->1")
        _one(tmp, "full->1", 6, "--resume")
        _two(tmp, "1->full", 6, "--resume", "--shard", "full")
        _two(tmp, "zero2", 3, launcher=ACCELERATE_ZERO2)
    return tmp


@gloo
@pytest.mark.parametrize("out", ["full", "zero2"])
def test_sharded_two_processes_equal_one(runs, out):
    assert _ranks(runs, out) == [["0 2 2"] * 3, ["1 2 2"] * 3]  # 2 ranks, each scored 2 of the 4 rows per step
    assert json.loads((runs / out / "config.json").read_text())["shard"] == {"full": "full", "zero2": "grad_op"}[out]
    _assert_same_run(read_log(runs / "one")[:3], read_log(runs / out))
    start = {n: p.detach() for n, p in tiny_llama(seed=0)[0].named_parameters()}
    _assert_same_weights(_weights(runs / "one@3"), _weights(runs / out), start)


@gloo
def test_sharded_checkpoints_resume_in_any_process_count(runs):
    assert _ranks(runs, "1->full") == [["0 2 2"] * 3, ["1 2 2"] * 3]  # steps 4-6 in 2 sharded processes
    start = {n: p.detach() for n, p in tiny_llama(seed=0)[0].named_parameters()}
    for out in ("full->1", "1->full"):
        _assert_same_run(read_log(runs / "one"), read_log(runs / out))
        _assert_same_weights(_weights(runs / "one"), _weights(runs / out), start)


@gloo
@pytest.mark.parametrize("mode", ["full", "grad_op"])
def test_each_process_holds_half_of_the_weights(tmp_path, mode):
    model, tok = tiny_llama(seed=0)
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    (tmp_path / "holdings.py").write_text(HOLDINGS)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(tmp_path / "holdings.py"), str(tmp_path / "model"), mode, str(tmp_path)],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    held = [json.loads(f.read_text()) for f in sorted(tmp_path.glob("holds*.json"))]
    assert [h["rank"] for h in held] == [0, 1], (done.stdout[-2000:], done.stderr[-3000:])
    for h in held:  # Shard(0) of each parameter: ceil/floor of half its rows
        assert abs(h["policy"] - h["whole"] / 2) < 0.01 * h["whole"] and abs(h["ref"] - h["whole"] / 2) < 0.01 * h["whole"]
    assert held[0]["policy"] + held[1]["policy"] == held[0]["whole"]  # every number held exactly once


def test_shard_mode_reads_the_fsdp_config(monkeypatch):
    assert shard_mode(TrainConfig(shard="grad_op")) == "grad_op"  # no launcher variables: the flag
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_RESHARD_AFTER_FORWARD", "false")
    assert shard_mode(TrainConfig()) == "grad_op"
    monkeypatch.setenv("FSDP_RESHARD_AFTER_FORWARD", "true")
    assert shard_mode(TrainConfig()) == "full"
    monkeypatch.setenv("FSDP_VERSION", "1")
    with pytest.raises(ValueError, match="fsdp_version: 2"):
        shard_mode(TrainConfig())
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ValueError, match="DeepSpeed config.*fsdp_zero2.yaml"):
        shard_mode(TrainConfig())


def test_unsupported_combinations_are_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown shard .zero3.; expected one of"):
        TrainConfig(shard="zero3")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="shard='full'.*critic"):
        processes(TrainConfig(device="cpu", method="ppo", shard="full"))
    model, _ = tiny_llama(seed=0)
    model.model.layers[0].to(torch.bfloat16)  # frozen blocks in bf16, the rest fp32
    with pytest.raises(ValueError, match=r"policy's weights in one dtype.*bfloat16.*float32"):
        check_shardable(model, "policy")


def test_tied_head_is_the_output_layer():
    """Oracle: the model's own (tied) output layer."""
    model, _ = tiny_llama(seed=0)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied, as SmolLM2
    h = torch.randn(3, 5, model.config.hidden_size)
    assert torch.equal(TiedHead(model.get_input_embeddings())(h), model.get_output_embeddings()(h))
