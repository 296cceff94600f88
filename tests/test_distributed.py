"""The trainer in 2 processes (torchrun, gloo, CPU) is the 1-process run with the same global batch.

Oracle: the 1-process run. A tiny random Llama saved to disk trains for 3 steps in 1 process and in
2 processes (`python -m torch.distributed.run --nproc-per-node 2`), then each resumes in the other
count to step 6. The reward function records the rank, world size and number of rows of each call,
so the test knows that 2 processes really ran, each scoring its half of every step's rows.

Tolerances. The samples, rewards and lengths are equal exactly (each row draws the uniform numbers it
draws in the whole batch; the prompts have the same token count, so no process pads differently). The
gradient of 2 processes is summed in another order than in one, so losses and weights agree to float
rounding, amplified a little by Adam (whose first steps are ±lr·sign(g) for tiny g): observed
max |ΔW| from 2e-6 to 3e-5 against a change of the weights of 3e-2 (3 steps) to 6e-2 (6 steps); the bound
is 1 % of the change, 12x the worst observed. Without the gradient all-reduce the loss of step 2 differs.

PPO (3 steps of 3 epochs each, token_mean): the same comparison, with PPO's logged figures (value loss, clip
fraction, approximate KL: whole-batch figures in every epoch) and the critic's weights as well as the policy's:
observed max |ΔW| 1.3e-6 (policy) and 2.0e-6 (critic) against changes of 8.7e-2 and 6.9e-2, the same 1 % bound.
Without `batch=trainer.dist` in llm.ppo (each process whitening and averaging its own rows) the loss of step 1
already differs (1.59 for 1.70) and the weights by 0.13. advantage_scale="batch_std" (2 steps): the same
comparison as the first; without `batch=self.dist` in the trainer the loss of step 1 differs (49.9 for 37.4).
"""

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from reinforce_edu.llm.checkpoint import read_checkpoint
from reinforce_edu.llm.cli import main
from reinforce_edu.llm.distributed import OneProcess, check_share, processes
from reinforce_edu.llm.models import tiny_llama
from reinforce_edu.llm.ppo import ValueModel
from reinforce_edu.llm.sampling import sample
from reinforce_edu.llm.trainer import TIME_KEYS, TrainConfig, read_log

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["Say something nice.", "Describe a city.", "Name a fruit.", "Describe a river.", "Name a colour.",
           "Describe a forest."]  # 34 tokens each, chat-formatted
EXACT = ("step", "proxy_reward", "gold_reward", "length", "clipped", "skipped", "n_skipped")
CLOSE = ("loss", "kl", "returns", "advantage_std", "grad_norm", "entropy")
PPO_EXACT = ("ppo_epochs_done",)
PPO_CLOSE = ("value_loss", "clip_fraction", "approx_kl")
PPO_ARGS = ("--method", "ppo", "--advantage-scale", "none", "--ppo-epochs", "3")  # the last flag of a name wins

REWARD_MODULE = '''
import os
import torch.distributed as dist

def char_reward(completions, **kwargs):
    """Length in characters / 20; appends "rank world rows" to ranks/rank<r>.txt."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    with open(os.path.join(os.environ["RANK_LOG_DIR"], f"rank{rank}.txt"), "a") as f:
        f.write(f"{rank} {world} {len(completions)}\\n")
    return [len(c) / 20 for c in completions]
'''

gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                          reason="torch.distributed with the gloo backend is not available in this torch build")


def _args(tmp: Path, out: str, steps: int, *extra: str) -> list[str]:
    return ["--model", str(tmp / "model"), "--reward", "dist_rewards:char_reward", "--prompts", str(tmp / "prompts.txt"),
            "--steps", str(steps), "--prompts-per-step", "2", "--samples-per-prompt", "2", "--max-new-tokens", "8",
            "--learning-rate", "0.01", "--baseline", "running_mean", "--advantage-scale", "group_std",
            "--aggregation", "token_mean", "--beta", "0.1", "--seed", "3", "--device", "cpu", "--dtype", "fp32",
            "--output-dir", str(tmp / out), "--progress", "false", *extra]


def _one(tmp: Path, out: str, steps: int, *extra: str) -> None:
    """1 process, in this one (one thread, as each of the 2 processes runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        main(_args(tmp, out, steps, *extra))
    finally:
        torch.set_num_threads(threads)


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]  # a free port


def _two(tmp: Path, out: str, steps: int, *extra: str, launcher: list[str] = TORCHRUN) -> None:
    """2 processes started by `launcher` (default: torchrun)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", RANK_LOG_DIR=str(tmp / "ranks" / out))
    env["PYTHONPATH"] = os.pathsep.join([str(tmp), str(ROOT), env.get("PYTHONPATH", "")])
    (tmp / "ranks" / out).mkdir(parents=True, exist_ok=True)
    cmd = [*launcher, "-m", "reinforce_edu.train", *_args(tmp, out, steps, *extra)]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@contextmanager
def workspace(tmp: Path) -> Iterator[Path]:
    """`tmp` holding the tiny model, the prompts and the reward module (importable while inside)."""
    model, tok = tiny_llama(seed=0)
    model.save_pretrained(tmp / "model")
    tok.save_pretrained(tmp / "model")
    (tmp / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    (tmp / "dist_rewards.py").write_text(REWARD_MODULE)
    (tmp / "ranks").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(tmp))
        mp.setenv("RANK_LOG_DIR", str(tmp / "ranks"))
        yield tmp


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """one: 1 process to step 3, resumed in 1 to 6. two: 2 processes to 3. 2->1, 1->2: resumed in the other count."""
    with workspace(tmp_path_factory.mktemp("dist")) as tmp:
        _one(tmp, "one", 3)
        shutil.copytree(tmp / "one", tmp / "1->2")
        shutil.copytree(tmp / "one", tmp / "one@3")
        _one(tmp, "one", 6, "--resume")
        _two(tmp, "two", 3)
        shutil.copytree(tmp / "two", tmp / "2->1")
        _one(tmp, "2->1", 6, "--resume")
        _two(tmp, "1->2", 6, "--resume")
    return tmp


def _weights(folder: Path) -> dict:
    return read_checkpoint(folder)["trainable"]


def _assert_same_run(ref: list[dict], got: list[dict], exact=EXACT, close=CLOSE) -> None:
    assert [r["step"] for r in got] == [r["step"] for r in ref]
    for a, b in zip(ref, got):
        assert {k: a[k] for k in exact} == {k: b[k] for k in exact}  # the same samples
        assert set(a) - set(TIME_KEYS) == set(b) - set(TIME_KEYS)
        for key in close:
            assert b[key] == pytest.approx(a[key], rel=1e-3, abs=1e-4), (a["step"], key)


def _assert_same_weights(ref: dict, got: dict, start: dict) -> None:
    change = max((ref[n] - start[n]).abs().max().item() for n in ref)
    diff = max((ref[n] - got[n]).abs().max().item() for n in ref)
    assert change > 1e-2  # training moved the weights: the comparison below can fail
    assert diff <= 1e-2 * change, (diff, change)


def _ranks(tmp: Path, out: str) -> list[str]:
    return sorted((tmp / "ranks" / out / f"rank{r}.txt").read_text().split("\n")[:-1] for r in range(2))


@gloo
def test_two_processes_equal_one(runs):
    assert _ranks(runs, "two") == [["0 2 2"] * 3, ["1 2 2"] * 3]  # 2 ranks, each scored 2 of the 4 rows per step
    assert not (runs / "ranks" / "two" / "rank2.txt").exists()
    _assert_same_run(read_log(runs / "one")[:3], read_log(runs / "two"))
    start = {n: p.detach() for n, p in tiny_llama(seed=0)[0].named_parameters()}
    _assert_same_weights(_weights(runs / "one@3"), _weights(runs / "two"), start)
    assert (runs / "two" / "config.json").is_file()  # written once, by rank 0


@gloo
def test_resume_across_process_counts(runs):
    assert _ranks(runs, "1->2") == [["0 2 2"] * 3, ["1 2 2"] * 3]  # steps 4-6 in 2 processes
    ref = read_log(runs / "one")
    start = {n: p.detach() for n, p in tiny_llama(seed=0)[0].named_parameters()}
    for out in ("2->1", "1->2"):
        _assert_same_run(ref, read_log(runs / out))
        _assert_same_weights(_weights(runs / "one"), _weights(runs / out), start)


@pytest.fixture(scope="module")
def ppo_runs(runs):
    """PPO: 1 process and 2 processes to step 3; batch_std: to step 2 (the model, prompts, reward module of `runs`)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(runs))
        mp.setenv("RANK_LOG_DIR", str(runs / "ranks"))
        _one(runs, "ppo1", 3, *PPO_ARGS)
        _two(runs, "ppo2", 3, *PPO_ARGS)
        _one(runs, "std1", 2, "--advantage-scale", "batch_std")
        _two(runs, "std2", 2, "--advantage-scale", "batch_std")
    return runs


@gloo
def test_batch_std_two_processes_equal_one(ppo_runs):
    """advantage_scale="batch_std": the std of all 4 returns of a step, not of each process's 2."""
    assert _ranks(ppo_runs, "std2") == [["0 2 2"] * 2, ["1 2 2"] * 2]
    _assert_same_run(read_log(ppo_runs / "std1"), read_log(ppo_runs / "std2"))
    start = {n: p.detach() for n, p in tiny_llama(seed=0)[0].named_parameters()}
    _assert_same_weights(_weights(ppo_runs / "std1"), _weights(ppo_runs / "std2"), start)


@gloo
def test_ppo_two_processes_equal_one(ppo_runs):
    assert _ranks(ppo_runs, "ppo2") == [["0 2 2"] * 3, ["1 2 2"] * 3]  # 2 ranks, each scored 2 of the 4 rows per step
    ref, got = read_log(ppo_runs / "ppo1"), read_log(ppo_runs / "ppo2")
    assert [r["ppo_epochs_done"] for r in ref] == [3, 3, 3] and max(r["clip_fraction"] for r in ref) > 0
    _assert_same_run(ref, got, EXACT + PPO_EXACT, CLOSE + PPO_CLOSE)
    policy = tiny_llama(seed=0)[0]
    start = {n: p.detach().clone() for n, p in policy.named_parameters()}
    _assert_same_weights(_weights(ppo_runs / "ppo1"), _weights(ppo_runs / "ppo2"), start)
    critic = {n: p.detach() for n, p in ValueModel(policy).named_parameters()}  # as the trainer builds it
    one, two = read_checkpoint(ppo_runs / "ppo1")["critic"], read_checkpoint(ppo_runs / "ppo2")["critic"]
    assert set(one) == set(two) == set(critic)
    _assert_same_weights(one, two, critic)


def test_prompt_share_and_rows():
    ids = torch.tensor([5, 1, 4, 0, 2, 3])
    shares = [OneProcess(torch.device("cpu"), r, 3).share(ids, k=4) for r in range(3)]
    assert torch.equal(torch.cat([s for s, _ in shares]), ids)  # contiguous, in rank order, all of them
    assert [rows for _, rows in shares] == [(0, 24), (8, 24), (16, 24)]
    alone, rows = OneProcess(torch.device("cpu")).share(ids)
    assert torch.equal(alone, ids) and rows == (0, 6)
    with pytest.raises(ValueError, match=r"prompts_per_step=6 .* number of processes 4"):
        OneProcess(torch.device("cpu"), 0, 4).share(ids)
    with pytest.raises(ValueError, match="prompts_per_step=3"):
        check_share(3, 2)


def test_launched_config_checks(monkeypatch):
    assert type(processes(TrainConfig(device="cpu"))) is OneProcess  # not launched: no process group
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="prompts_per_step=3 .* processes 2"):
        processes(TrainConfig(device="cpu", prompts_per_step=3))
    with pytest.raises(ValueError, match="group_filter runs in one process"):
        processes(TrainConfig(device="cpu", group_filter="drop_zero_variance"))
    with pytest.raises(ValueError, match="batch_std' needs at least 2 rows in each process.* = 2 rows for 2"):
        processes(TrainConfig(device="cpu", advantage_scale="batch_std", prompts_per_step=2, samples_per_prompt=1,
                              baseline="none"))
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # what `accelerate launch` sets for a DeepSpeed config
    with pytest.raises(ValueError, match="DeepSpeed config.*does not run DeepSpeed's engine"):
        processes(TrainConfig(device="cpu"))  # refused, not run unsharded (FSDP: tests/test_sharding.py)


def test_rows_draw_what_the_whole_batch_draws():
    """Oracle: sampling the second prompt alone with rows=(2, 4) gives rows 2-3 of the 2-prompt batch."""
    model, tok = tiny_llama(seed=0)
    full = sample(model, tok, PROMPTS[:2], 2, 8, seed=11)
    part = sample(model, tok, PROMPTS[1:2], 2, 8, seed=11, rows=(2, 4))
    T = part.completion_ids.shape[1]
    assert torch.equal(part.completion_ids, full.completion_ids[2:, :T])
    assert torch.equal(part.completion_mask, full.completion_mask[2:, :T])
    assert full.completion_mask[2:, T:].sum() == 0  # rows 2-3 had ended by then in the whole batch too
    assert part.completions == full.completions[2:]
    alone = sample(model, tok, PROMPTS[1:2], 2, 8, seed=11)  # without rows: the first rows' numbers
    assert alone.completions != part.completions
    with pytest.raises(ValueError, match="rows"):
        sample(model, tok, PROMPTS[1:2], 2, 8, seed=11, rows=(3, 4))
