"""Kill -9 a training run right after a checkpoint, resume it, and get exactly the uninterrupted run.

Three CLI processes (`python -m reinforce_edu.train`) on a tiny random Llama saved to disk, CPU,
one thread each, same seed: (A) runs straight through; (B) is SIGKILLed as soon as its first
checkpoint appears, then (B') resumes it. A and B+B' must end with the same metrics (every
field but the wall-clock step time) and bit-identical weights and optimiser state.

Then the checkpoint files themselves (reinforce_edu/llm/checkpoint.py), on a two-parameter stand-in
for a trainer: a save/load round trip restores every piece exactly; a save that fails, or is killed
before its marker is replaced, leaves the last checkpoint whole; and nothing is ever unpickled beyond
tensors and plain data: a file crafted to run code when unpickled is refused without running it, and
an old pickled checkpoint.pt gives a clear error instead of being loaded.
"""

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reinforce_edu.core.baselines import RunningMeanBaseline
from reinforce_edu.llm.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from reinforce_edu.llm.distributed import OneProcess
from reinforce_edu.llm.models import tiny_llama
from reinforce_edu.llm.trainer import CHECKPOINT, TIME_KEYS, TrainConfig, Trainer, read_log

ROOT = Path(__file__).resolve().parents[1]
STEPS = 12

REWARD_MODULE = '''
def char_reward(completions, **kwargs):
    """Length of each completion in characters / 20: varies between random completions."""
    return [len(c) / 20 for c in completions]
'''


def _cli(tmp_path: Path, out: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "reinforce_edu.llm.cli", "--model", str(tmp_path / "model"),
            "--reward", "resume_rewards:char_reward", "--prompts", str(tmp_path / "prompts.txt"),
            "--steps", str(STEPS), "--checkpoint-every", "3", "--prompts-per-step", "2",
            "--samples-per-prompt", "2", "--max-new-tokens", "8", "--learning-rate", "0.01",
            "--baseline", "running_mean", "--beta", "0.1", "--device", "cpu",
            "--output-dir", str(tmp_path / out), "--progress", "false", *extra]


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def test_sigkill_after_checkpoint_then_resume_is_exact(tmp_path):
    model, tok = tiny_llama(seed=0)
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    (tmp_path / "prompts.txt").write_text("Say something nice.\nHow is the weather?\nTell me about dogs.\n"
                                          "Describe a city.\nHello!\n")
    (tmp_path / "resume_rewards.py").write_text(REWARD_MODULE)
    env = _env(tmp_path)

    subprocess.run(_cli(tmp_path, "a"), env=env, check=True, cwd=ROOT, capture_output=True, timeout=300)

    proc = subprocess.Popen(_cli(tmp_path, "b"), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "b" / CHECKPOINT
    deadline = time.monotonic() + 300
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL  # killed mid-run, not finished
    killed_at = read_checkpoint(ckpt)["step"]
    assert 3 <= killed_at < STEPS

    subprocess.run(_cli(tmp_path, "b", "--resume"), env=env, check=True, cwd=ROOT, capture_output=True, timeout=300)

    def strip(records):
        return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in records]

    log_a, log_b = read_log(tmp_path / "a"), read_log(tmp_path / "b")
    assert [r["step"] for r in log_b] == list(range(1, STEPS + 1))  # no step lost, none doubled
    assert strip(log_a) == strip(log_b)
    a, b = read_checkpoint(tmp_path / "a"), read_checkpoint(tmp_path / "b")
    assert a["step"] == b["step"] == STEPS
    assert a["trainable"].keys() == b["trainable"].keys()
    assert all(torch.equal(a["trainable"][n], b["trainable"][n]) for n in a["trainable"])
    for k, state in a["optimizer"]["state"].items():
        assert all(torch.equal(v, b["optimizer"]["state"][k][s]) for s, v in state.items() if torch.is_tensor(v))
    assert a["baseline"] == b["baseline"]
    assert len([p for p in (tmp_path / "b").iterdir() if p.is_dir()]) == 1  # older checkpoint folders deleted


# ---- the checkpoint files, on a stand-in trainer ------------------------------------------


class StandIn:
    """The attributes llm.checkpoint reads and writes, on a two-parameter policy and a one-output critic."""

    def __init__(self, out: Path, seed: int = 0):
        torch.manual_seed(seed)
        self.policy, self.critic = torch.nn.Linear(3, 2), torch.nn.Linear(3, 1)
        self.trainable = ["weight", "bias"]
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=0.1)
        self.critic_optimizer = torch.optim.AdamW(self.critic.parameters(), lr=0.1)
        self.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** (10 + seed))
        self.baseline = RunningMeanBaseline(decay=0.9)
        self.config = TrainConfig(baseline="running_mean", output_dir=str(out))
        self.step = self.n_skipped = 0
        self.out, self.history, self._append = Path(out), [], False
        self.dist = OneProcess(torch.device("cpu"))  # one process: it owns the log

    def train_step(self) -> None:
        for module, opt in ((self.policy, self.optimizer), (self.critic, self.critic_optimizer)):
            opt.zero_grad()
            module(torch.randn(4, 3)).pow(2).sum().backward()
            opt.step()
        self.baseline.update(torch.rand(2, 2) + random.random())
        self.step += 1


def _state(t: StandIn) -> list:
    """Every piece a checkpoint must restore, as comparable values."""
    opt = [{k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
           for o in (t.optimizer, t.critic_optimizer) for s in o.state_dict()["state"].values()]
    return [{n: p.detach().clone() for n, p in t.policy.named_parameters()},
            {n: p.detach().clone() for n, p in t.critic.named_parameters()}, opt, t.baseline.state_dict(),
            t.scaler.state_dict(), t.step]


def _equal(a, b) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_equal, a, b))
    return a == b


def test_save_then_load_restores_every_piece_exactly(tmp_path):
    t = StandIn(tmp_path)
    for _ in range(3):
        t.train_step()
    marker = save_checkpoint(t)
    saved = _state(t)
    t.train_step()  # what the run does next, from the saved RNG states
    after_one_more = _state(t)

    u = StandIn(tmp_path, seed=1)  # other weights, loss scale, RNG states
    assert not _equal(_state(u), saved)
    load_checkpoint(u, marker)
    assert _equal(_state(u), saved)
    u.train_step()
    assert _equal(_state(u), after_one_more)  # the RNG states came back too: the same next step

    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert json.loads(marker.read_text())["folder"] == folder.name
    assert sorted(p.name for p in folder.iterdir()) == ["critic.safetensors", "policy.safetensors", "state.json",
                                                         "state.pt"]
    assert json.loads((folder / "state.json").read_text())["step"] == 3


def test_a_save_that_dies_before_its_marker_leaves_the_last_checkpoint_whole(tmp_path, monkeypatch):
    t = StandIn(tmp_path)
    t.train_step()
    save_checkpoint(t)
    good = _state(t)
    t.train_step()

    def no_replace(src, dst):
        raise OSError("killed before the marker was replaced")

    with monkeypatch.context() as m:
        m.setattr(os, "replace", no_replace)
        with pytest.raises(OSError, match="killed"):
            save_checkpoint(t)
    (tmp_path / f"checkpoint-000002-{'x' * 8}").mkdir()  # a folder left half-written by a SIGKILLed save
    assert read_checkpoint(tmp_path)["step"] == 1
    u = StandIn(tmp_path, seed=1)
    load_checkpoint(u, tmp_path / CHECKPOINT)
    assert _equal(_state(u), good)
    save_checkpoint(t)  # the next good save clears every older folder
    (folder,) = [p.name for p in tmp_path.iterdir() if p.is_dir()]
    assert folder.startswith("checkpoint-000002-") and read_checkpoint(tmp_path)["step"] == 2


class RunsCode:
    """Unpickled, it creates the folder `path`: the stand-in for a file crafted to run code on loading."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)


def test_a_file_crafted_to_run_code_is_refused_without_running_it(tmp_path):
    t = StandIn(tmp_path / "run")
    t.train_step()
    marker = save_checkpoint(t)
    state_pt = next(p for p in (tmp_path / "run").iterdir() if p.is_dir()) / "state.pt"
    ran = tmp_path / "the_code_ran"
    torch.save({"optimizer": RunsCode(ran)}, state_pt)
    with pytest.raises(ValueError, match=r"state\.pt holds more than tensors and plain data"):
        read_checkpoint(marker)
    with pytest.raises(ValueError, match=r"state\.pt"):
        load_checkpoint(StandIn(tmp_path / "run"), marker)
    marker.write_bytes(pickle.dumps(RunsCode(ran)))  # the marker itself a pickle
    with pytest.raises(ValueError, match="is a pickled checkpoint"):
        read_checkpoint(marker)
    assert not ran.exists()
    torch.load(state_pt, weights_only=False)  # the control: unpickled, the file does run its code
    assert ran.is_dir()


def test_an_old_pickled_checkpoint_gives_a_clear_error(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    ran = tmp_path / "the_code_ran"
    torch.save({"step": 3, "trainable": {}, "rng": RunsCode(ran)}, run / "checkpoint.pt")  # 0.1.0's layout
    model, tok = tiny_llama(seed=0)
    config = TrainConfig(reward="gold", prompts_per_step=2, samples_per_prompt=2, max_new_tokens=4, steps=2,
                         output_dir=str(run), resume=True, progress=False)
    expected = r"checkpoint\.pt is a pickled checkpoint .*reinforce-edu 0\.1\.0.*Restart the run"
    with pytest.raises(ValueError, match=expected):
        Trainer(config, policy=model, tokenizer=tok, reward_fn=lambda completions, **kw: [0.0] * len(completions),
                prompts=["Hello!", "Describe a city."])
    with pytest.raises(ValueError, match=expected):
        read_checkpoint(run / "checkpoint.pt")
    assert not ran.exists() and sorted(p.name for p in run.iterdir()) == ["checkpoint.pt"]  # nothing written


def test_a_foreign_or_other_version_marker_is_refused(tmp_path):
    t = StandIn(tmp_path)
    marker = save_checkpoint(t)
    good = json.loads(marker.read_text())
    for bad, match in (({**good, "version": 1}, "format version 1 .*restart the run"),
                       ({**good, "folder": "../elsewhere"}, "'folder' must name a folder beside the marker"),
                       ({"weights": "model.bin"}, "is not a reinforce-edu checkpoint: expected a JSON marker")):
        marker.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=match):
            read_checkpoint(marker)
    marker.write_text(json.dumps({**good, "folder": "checkpoint-000000-missing0"}))
    with pytest.raises(ValueError, match="lacks state.json"):
        read_checkpoint(marker)
    (tmp_path / "foreign.zip").write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: foreign, not a pickle
    with pytest.raises(ValueError, match="is not a reinforce-edu checkpoint"):
        read_checkpoint(tmp_path / "foreign.zip")
