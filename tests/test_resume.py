"""Kill -9 a training run right after a checkpoint, resume it, and get exactly the uninterrupted run.

Three CLI processes (`python -m reinforce_edu.train`) on a tiny random Llama saved to disk, CPU,
one thread each, same seed: (A) runs straight through; (B) is SIGKILLed as soon as its first
checkpoint appears, then (B') resumes it. A and B+B' must end with the same metrics (every
field but the wall-clock step time) and bit-identical weights and optimiser state.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from reinforce_edu.llm.models import tiny_llama
from reinforce_edu.llm.trainer import CHECKPOINT, TIME_KEYS, read_log

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
    killed_at = torch.load(ckpt, weights_only=False)["step"]
    assert 3 <= killed_at < STEPS

    subprocess.run(_cli(tmp_path, "b", "--resume"), env=env, check=True, cwd=ROOT, capture_output=True, timeout=300)

    def strip(records):
        return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in records]

    log_a, log_b = read_log(tmp_path / "a"), read_log(tmp_path / "b")
    assert [r["step"] for r in log_b] == list(range(1, STEPS + 1))  # no step lost, none doubled
    assert strip(log_a) == strip(log_b)
    a = torch.load(tmp_path / "a" / CHECKPOINT, weights_only=False)
    b = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=False)
    assert a["step"] == b["step"] == STEPS
    assert a["trainable"].keys() == b["trainable"].keys()
    assert all(torch.equal(a["trainable"][n], b["trainable"][n]) for n in a["trainable"])
    for k, state in a["optimizer"]["state"].items():
        assert all(torch.equal(v, b["optimizer"]["state"][k][s]) for s, v in state.items() if torch.is_tensor(v))
    assert a["baseline"] == b["baseline"]
