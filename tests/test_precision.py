"""The precision chooser (reinforce_edu/perf/precision.py): what "auto" picks on each kind of device, that
every path of a training step honours it, fp16's loss scaling, and clear errors on bad settings."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import reinforce_edu.perf.precision as precision
from reinforce_edu.llm.models import tiny_llama
from reinforce_edu.perf.precision import BF16_MIN_SPEEDUP, DTYPES, choose_precision, cpu_matmul_probe
from reinforce_edu.llm.trainer import TrainConfig, Trainer

# probe figures of the CPU kinds seen (one thread, torch 2.13)
SLOW_BF16 = {"n": 256, "threads": 1, "fp32_gflops": 81.0, "bf16_gflops": 0.9, "bf16_speedup": 0.9 / 81, "seconds": 0.2}
FAST_BF16 = {"n": 1024, "threads": 1, "fp32_gflops": 450.0, "bf16_gflops": 1350.0, "bf16_speedup": 3.0, "seconds": 0.01}
EVEN = {"n": 1024, "threads": 1, "fp32_gflops": 100.0, "bf16_gflops": 110.0, "bf16_speedup": 1.1, "seconds": 0.05}
PROMPTS = ["Say something nice.", "How is the weather?", "Tell me about dogs."]


def test_cpu_auto_follows_the_probe():
    slow = choose_precision("cpu", probe=SLOW_BF16, verbose=False)
    assert (slow.name, slow.dtype, slow.device) == ("fp32", torch.float32, "cpu")
    assert "0.9 GFLOP/s in bf16 and 81.0 in fp32" in slow.reason and slow.probe == SLOW_BF16
    fast = choose_precision("cpu", probe=FAST_BF16, verbose=False)
    assert (fast.name, fast.dtype) == ("bf16", torch.bfloat16)
    assert choose_precision("cpu", probe=EVEN, verbose=False).name == "fp32"  # below the margin: casts not repaid
    assert EVEN["bf16_speedup"] < BF16_MIN_SPEEDUP < FAST_BF16["bf16_speedup"]
    for name in ("bf16", "fp16", "fp32"):  # a setting is obeyed, no probe runs
        chosen = choose_precision("cpu", name, verbose=False)
        assert chosen.name == name and chosen.probe is None and chosen.reason == "as requested"


def test_cuda_with_and_without_bf16(monkeypatch):
    monkeypatch.setattr(precision, "_cuda_name", lambda device: "Tesla T4")
    monkeypatch.setattr(precision, "_cuda_bf16", lambda device: True)
    a100 = choose_precision("cuda", verbose=False)
    assert (a100.name, a100.device, a100.loss_scaling) == ("bf16", "cuda", False)
    monkeypatch.setattr(precision, "_cuda_bf16", lambda device: False)
    t4 = choose_precision("cuda:0", verbose=False)
    assert (t4.name, t4.dtype, t4.loss_scaling) == ("fp16", torch.float16, True)
    assert choose_precision("cuda", "fp32", verbose=False).name == "fp32"
    with pytest.raises(ValueError, match="dtype='bf16' but Tesla T4 has no bf16 support"):
        choose_precision("cuda", "bf16", verbose=False)


def test_mps_defaults_to_fp32():
    assert choose_precision("mps", verbose=False).name == "fp32"
    assert choose_precision("mps", "fp16", verbose=False).name == "fp16"


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match=r"dtype must be one of \('auto', 'bf16', 'fp16', 'fp32'\), got 'fp8'"):
        choose_precision("cpu", "fp8")
    with pytest.raises(TypeError, match="dtype must be a str"):
        choose_precision("cpu", torch.bfloat16)
    with pytest.raises(ValueError, match="device must be a cpu, cuda or mps device"):
        choose_precision("meta")
    with pytest.raises(ValueError, match="dtype"):
        TrainConfig(dtype="fp8")
    assert DTYPES == ("auto", "bf16", "fp16", "fp32")


def test_decision_printed_once_per_process(capsys):
    precision._printed.clear()
    choose_precision("cpu", probe=SLOW_BF16)
    choose_precision("cpu", probe=SLOW_BF16)
    out = capsys.readouterr().out
    assert out.count("precision fp32 on cpu: a 256x256 matmul") == 1


def test_probe_measures_both_dtypes(one_thread):
    figures = cpu_matmul_probe(n=64, repeats=2)
    assert set(figures) == {"n", "threads", "fp32_gflops", "bf16_gflops", "bf16_speedup", "seconds"}
    assert figures["threads"] == 1 and figures["n"] in (64, 1024)
    assert figures["fp32_gflops"] > 0 and figures["bf16_gflops"] > 0
    assert figures["bf16_speedup"] == pytest.approx(figures["bf16_gflops"] / figures["fp32_gflops"], rel=0.01)
    assert precision._cached_cpu_probe() is precision._cached_cpu_probe()  # measured once per process


class DtypeSpy(TorchDispatchMode):
    """Records the dtype of every floating tensor any op creates."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                self.seen.add(t.dtype)
        return out


def train_step_dtypes(tmp_path, monkeypatch, probe, **overrides):
    monkeypatch.setattr(precision, "_cached_cpu_probe", lambda: dict(probe))
    model, tok = tiny_llama(seed=0)
    cfg = TrainConfig(reward="gold", prompts_per_step=2, samples_per_prompt=2, max_new_tokens=4, steps=1,
                      output_dir=str(tmp_path / "run"), progress=False, device="cpu", **overrides)
    trainer = Trainer(cfg, policy=model, tokenizer=tok, reward_fn=lambda completions, **kw: [1.0 * len(c)
                                                                                             for c in completions],
                      prompts=PROMPTS)
    stored = {p.dtype for p in list(trainer.policy.parameters()) + list(trainer.ref.parameters())}
    with DtypeSpy() as spy:
        trainer.train()
    return trainer, stored | spy.seen


@pytest.mark.parametrize("method", ["reinforce", "ppo"])
def test_auto_on_a_bf16_slow_cpu_makes_no_16_bit_tensor(tmp_path, monkeypatch, one_thread, method):
    """Frozen blocks, π_ref, sampling, log-probs, the loss, the critic: all fp32 when bf16 is slow."""
    trainer, dtypes = train_step_dtypes(tmp_path, monkeypatch, SLOW_BF16, trainable_blocks=1, method=method)
    assert trainer.precision.name == "fp32" and trainer.scaler is None
    assert torch.float32 in dtypes and torch.bfloat16 not in dtypes and torch.float16 not in dtypes
    import json
    logged = json.loads((tmp_path / "run" / "config.json").read_text())
    assert logged["dtype"] == "auto" and logged["precision"]["name"] == "fp32"
    assert logged["precision"]["probe"]["bf16_gflops"] == SLOW_BF16["bf16_gflops"]


def test_auto_on_a_bf16_fast_cpu_computes_in_bf16(tmp_path, monkeypatch, one_thread):
    """The same step where bf16 is fast: bf16 tensors appear (so the check above can fail), frozen blocks stored in bf16."""
    trainer, dtypes = train_step_dtypes(tmp_path, monkeypatch, FAST_BF16, trainable_blocks=1)
    assert trainer.precision.name == "bf16" and torch.bfloat16 in dtypes
    assert all(p.dtype == (torch.float32 if p.requires_grad else torch.bfloat16)
               for p in trainer.policy.model.layers.parameters())


def test_bf16_models_outside_autocast_are_a_clear_error(tmp_path, monkeypatch, one_thread):
    """π_ref and the policy of a bf16 trainer mix bf16 and fp32 weights: outside its autocast a clear ValueError
    (not torch's "expected m1 and m2 to have the same dtype"); under it, sampling and scoring work."""
    from reinforce_edu.llm.logprobs import completion_logprobs
    from reinforce_edu.llm.sampling import sample
    trainer, _ = train_step_dtypes(tmp_path, monkeypatch, FAST_BF16, trainable_blocks=1)
    for model in (trainer.ref, trainer.policy):
        with pytest.raises(ValueError, match="bfloat16 and float32.*trainer.autocast"):
            sample(model, trainer.tokenizer, PROMPTS[:1], k=2, max_new_tokens=3, seed=0)
        with trainer.autocast():
            ro = sample(model, trainer.tokenizer, PROMPTS[:1], k=2, max_new_tokens=3, seed=0)
            logp = completion_logprobs(model, ro.input_ids, ro.attention_mask, ro.prompt_length)
        assert logp.dtype == torch.float32 and torch.isfinite(logp).all()
        with pytest.raises(ValueError, match="trainer.autocast"):
            completion_logprobs(model, ro.input_ids, ro.attention_mask, ro.prompt_length)


def test_fp16_scales_the_loss_and_skips_an_overflow(tmp_path, one_thread):
    """fp16: the clipped norm is the true (unscaled) one; an overflowing step changes nothing and halves the scale."""
    model, tok = tiny_llama(seed=0)
    cfg = TrainConfig(reward="gold", dtype="fp16", device="cpu", output_dir=str(tmp_path / "run"), progress=False,
                      trainable_blocks=1)
    trainer = Trainer(cfg, policy=model, tokenizer=tok, reward_fn=lambda completions, **kw: [0.0] * len(completions),
                      prompts=PROMPTS)
    assert trainer.precision.loss_scaling and trainer.scaler.get_scale() == 65536.0
    w = trainer.policy.model.norm.weight
    expected = float(w.detach().double().norm())
    norm, reason = trainer._apply(0.5 * (w ** 2).sum())  # ∇ = w, so ‖g‖ = ‖w‖ (before the step moves w)
    assert reason is None and norm == pytest.approx(expected, rel=1e-6)
    before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}
    norm, reason = trainer._apply(1e36 * w.sum())  # finite loss, but S·∇ overflows fp32
    assert reason == "non-finite gradient"
    assert all(torch.equal(before[n], p) for n, p in trainer.policy.named_parameters())
    assert trainer.scaler.get_scale() == 32768.0
    assert trainer.state()["scaler"]["scale"] == 32768.0  # kept across a resume
