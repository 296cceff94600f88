"""Lesson 07's methods through the one trainer (PPO, GRPO), the shared-prompt passes, the cost meters."""

import math
import statistics
import time

from pathlib import Path

import pytest
import torch

from reinforce_edu.llm.comparison import METHODS, method_config, paired_memory_gap, run_method, summarise
from reinforce_edu.llm.logprobs import completion_logprobs
from reinforce_edu.llm.sampling import filter_logits, sample, sample_categorical
from reinforce_edu.perf.measure import PeakMemory, best_seconds, count_flops, matmul_peak, matmul_share, time_phases
from reinforce_edu.perf.provenance import device_description, device_slug, git_commit, platform_id, write_result
from reinforce_edu.llm.models import tiny_llama
from reinforce_edu.llm.trainer import CHECKPOINT, TrainConfig, Trainer

PROMPTS = ["Say something nice.", "How is the weather?", "Tell me about dogs.", "Describe a city.", "Hello!"]


def char_reward(completions, **kwargs):
    return [len(c) / 20 for c in completions]


pytestmark = pytest.mark.usefixtures("one_thread_module")


def make(tmp_path, reward_fn=char_reward, **overrides):
    model, tok = tiny_llama(seed=0)
    settings = dict(reward="gold", prompts_per_step=2, samples_per_prompt=2, max_new_tokens=4, steps=1,
                    learning_rate=1e-2, output_dir=str(tmp_path / "run"), progress=False, device="cpu")
    settings.update(overrides)
    return Trainer(TrainConfig(**settings), policy=model, tokenizer=tok, reward_fn=reward_fn, prompts=PROMPTS)


# ---- the shared-prompt passes are the full passes ---------------------------------------

@pytest.fixture(scope="module")
def tiny():
    return tiny_llama(seed=0)


def test_group_size_logprobs_and_gradients_equal_the_full_pass(tiny):
    model, tok = tiny
    r = sample(model, tok, PROMPTS[:3], k=3, max_new_tokens=5, seed=0)
    m = r.completion_mask
    grads = []
    for group in (1, 3):
        model.zero_grad(set_to_none=True)
        lp = completion_logprobs(model, r.input_ids, r.attention_mask, r.prompt_length, group_size=group)
        (lp * m).sum().backward()
        grads.append((lp.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-5, rtol=1e-5)
    for n, g in grads[0][1].items():
        torch.testing.assert_close(grads[1][1][n], g, atol=1e-5, rtol=1e-4)
    model.zero_grad(set_to_none=True)


def test_group_size_needs_rows_that_share_a_prompt(tiny):
    model, tok = tiny
    r = sample(model, tok, PROMPTS[:2], k=2, max_new_tokens=3, seed=0)
    with pytest.raises(ValueError, match="share the same prompt"):
        mixed = [0, 2, 1, 3]  # rows of two different prompts in each group of 2
        completion_logprobs(model, r.input_ids[mixed], r.attention_mask[mixed], r.prompt_length, group_size=2)
    with pytest.raises(ValueError, match="group_size"):
        completion_logprobs(model, r.input_ids, r.attention_mask, r.prompt_length, group_size=3)


def test_sharing_the_prompt_samples_the_same_tokens(tiny):
    model, tok = tiny
    a = sample(model, tok, PROMPTS[:3], k=4, max_new_tokens=6, seed=3, share_prompts=False)
    b = sample(model, tok, PROMPTS[:3], k=4, max_new_tokens=6, seed=3)
    assert torch.equal(a.input_ids, b.input_ids) and a.completions == b.completions


def test_inverse_cdf_sampling_matches_the_probabilities():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 50, generator=g) * 2
    p = torch.softmax(z, -1)[0]
    n = 20_000
    torch.manual_seed(0)
    draws = sample_categorical(z.expand(n, 50))
    freq = torch.bincount(draws, minlength=50).float() / n
    se = (p * (1 - p) / n).sqrt()
    assert ((freq - p).abs() <= 4 * se + 1e-4).all()
    z0 = z.clone()
    z0[0, :10] = float("-inf")  # probability 0: never drawn
    assert (sample_categorical(z0.expand(2000, 50)) >= 10).all()


def test_filter_logits_top_k_and_top_p():
    z = torch.tensor([[3.0, 1.0, 2.0, 0.0]])  # probabilities ≈ 0.64, 0.09, 0.24, 0.03
    assert torch.isinf(filter_logits(z, top_k=2)).tolist() == [[False, True, False, True]]
    assert torch.isinf(filter_logits(z, top_p=0.8)).tolist() == [[False, True, False, True]]  # 0.64 + 0.24 ≥ 0.8
    assert torch.isinf(filter_logits(z, top_p=0.5)).tolist() == [[False, True, True, True]]
    assert torch.equal(filter_logits(z), z)


# ---- PPO and GRPO through the trainer ----------------------------------------------------

def test_ppo_step_updates_policy_and_critic_and_logs_its_diagnostics(tmp_path):
    t = make(tmp_path, method="ppo", baseline="none", samples_per_prompt=1, prompts_per_step=4, ppo_epochs=3,
             trainable_blocks=1)
    assert t.critic is not None and t.critic_optimizer is not None
    before = {n: p.detach().clone() for n, p in t.policy.named_parameters() if p.requires_grad}
    head = t.critic.head.weight.detach().clone()
    body = {n: p.detach().clone() for n, p in t.critic.body.named_parameters()}
    (rec,) = t.train()
    assert all(not torch.equal(p, before[n]) for n, p in t.policy.named_parameters() if p.requires_grad)
    assert not torch.equal(t.critic.head.weight, head)
    moved = {n for n, p in t.critic.body.named_parameters() if not torch.equal(p, body[n])}
    assert moved == {n for n, p in t.critic.body.named_parameters() if p.requires_grad} and moved
    assert rec["ppo_epochs_done"] == 3 and rec["skipped"] is None
    assert abs(rec["kl"]) < 1e-5  # first step: π_θ = π_ref
    for key in ("value_loss", "clip_fraction", "approx_kl", "gen_time", "peak_memory_mib"):
        assert math.isfinite(rec[key]), key


def test_ppo_resume_restores_the_critic(tmp_path):
    t = make(tmp_path, method="ppo", baseline="none", samples_per_prompt=1, steps=1)
    t.train()
    saved = {n: p.detach().clone() for n, p in t.critic.named_parameters()}
    t2 = make(tmp_path, method="ppo", baseline="none", samples_per_prompt=1, steps=2, resume=True)
    assert t2.step == 1 and (tmp_path / "run" / CHECKPOINT).is_file()
    for n, p in t2.critic.named_parameters():
        assert torch.equal(p, saved[n]), n
    assert t2.critic_optimizer.state_dict()["state"]


def test_grpo_step_uses_group_std_advantages(tmp_path, monkeypatch):
    """The trainer's GRPO step: each prompt's sequence advantages have standard deviation 1 (up to ε)."""
    import reinforce_edu.llm.trainer as trainer_module
    outs = []

    def spy(*a, **k):
        outs.append(trainer_module_loss(*a, **k))
        return outs[-1]

    trainer_module_loss = trainer_module.reinforce_loss
    monkeypatch.setattr(trainer_module, "reinforce_loss", spy)
    t = make(tmp_path, baseline="prompt_mean", advantage_scale="group_std", samples_per_prompt=4, beta=0.0,
             reward_fn=lambda completions, **kw: [float(i % 4) for i in range(len(completions))])
    (rec,) = t.train()
    assert rec["skipped"] is None
    (out,) = outs
    adv = out.advantages[:, 0].view(2, 4)  # (P, k): sequence credit, the same on every token of a row
    torch.testing.assert_close(adv.std(dim=1), torch.ones(2), atol=1e-3, rtol=0)
    torch.testing.assert_close(adv.mean(dim=1), torch.zeros(2), atol=1e-6, rtol=0)


def test_method_settings_are_validated():
    with pytest.raises(ValueError, match="method"):
        TrainConfig(method="trpo")
    with pytest.raises(ValueError, match="group_std"):
        TrainConfig(advantage_scale="group_std", samples_per_prompt=1, baseline="none")
    with pytest.raises(ValueError, match="ppo"):
        TrainConfig(method="ppo", baseline="none", kl_placement="loss")
    with pytest.raises(ValueError, match="ppo_epochs"):
        TrainConfig(method="ppo", baseline="none", ppo_epochs=0)
    TrainConfig(method="ppo", baseline="rloo", samples_per_prompt=1)  # the baseline is unused by PPO


# ---- comparison and cost meters ----------------------------------------------------------

def test_every_method_sees_the_same_number_of_samples():
    budgets = {n: method_config(n, 8).prompts_per_step * method_config(n, 8).samples_per_prompt for n in METHODS}
    assert set(budgets.values()) == {8}
    with pytest.raises(ValueError, match="multiple of k"):
        method_config("rloo_k4", 6)
    with pytest.raises(ValueError, match="method"):
        method_config("reinforce_k8", 8)


def test_run_method_smoke_and_summary(tiny):
    model, tok = tiny
    results = [run_method(name, seed, samples_per_step=4, policy=model, tokenizer=tok, prompts=PROMPTS,
                          eval_prompts=PROMPTS[:2], steps=2, max_new_tokens=3, learning_rate=1e-2, reward="gold",
                          device="cpu")
               for name in ("rloo_k2", "ppo") for seed in (0, 1)]
    rows = summarise(results, last=2)
    assert list(rows) == ["rloo_k2", "ppo"]
    for row in rows.values():
        assert row["seeds"] == 2 and math.isfinite(row["eval_gold"]) and math.isfinite(row["kl"])
    assert [c["samples_seen"] for c in results[0]["curve"]] == [4, 8]
    assert results[-1]["peak_memory"] > 0
    indices = [r["run_index"] for r in results]  # the process's order of runs, one apart
    assert indices == list(range(indices[0], indices[0] + 4))


def _fake_run(name, seed, rise, index):
    return {"name": name, "seed": seed, "run_index": index, "memory_rise": rise, "peak_memory": rise + 100,
            "s_per_step": 1.0, "curve": [{"gold": 0.5, "proxy": 0.5, "kl": 0.1}], "eval": {"gold": 0.5}}


def test_summarise_leaves_out_the_first_run_and_pairs_memory_by_seed():
    # two methods that hold the same memory, run in one process: the first run pays +500 once,
    # and every seed round adds +40 of heap drift
    order = [("vanilla_pg", 0), ("running_mean", 0), ("vanilla_pg", 1), ("running_mean", 1),
             ("vanilla_pg", 2), ("running_mean", 2)]
    noise = {("vanilla_pg", 1): 3.0, ("running_mean", 1): -3.0}
    results = [_fake_run(n, s, 1000 + 40 * s + (500 if i == 0 else 0) + noise.get((n, s), 0.0), i)
               for i, (n, s) in enumerate(order)]
    rows = summarise(results, last=1)
    assert rows["vanilla_pg"]["memory_rise"] == pytest.approx((1043 + 1080) / 2)  # seed 0's 1500 left out
    assert rows["running_mean"]["memory_rise"] == pytest.approx((1000 + 1037 + 1080) / 3)
    assert rows["vanilla_pg"]["peak_memory"] == pytest.approx(rows["vanilla_pg"]["memory_rise"] + 100)
    gap, se, pairs = paired_memory_gap(results, "vanilla_pg", "running_mean")
    assert pairs == 2 and gap == pytest.approx(3.0)  # (6 + 0) / 2: the drift cancels within a round
    assert se == pytest.approx(statistics.stdev([6.0, 0.0]) / math.sqrt(2))
    # a method whose only run was the process's first still gets a figure
    assert summarise([_fake_run("ppo", 0, 7.0, 0)])["ppo"]["memory_rise"] == 7.0


def test_peak_memory_sees_an_allocation():
    with PeakMemory("cpu") as mem:
        x = torch.ones(50 * 2 ** 18)  # 50 MiB
        del x
    if mem.kind != "rss":
        pytest.skip("this platform's peak-memory meter cannot be reset (no /proc)")
    assert mem.rise >= 45 * 2 ** 20


def test_count_flops_of_a_matmul_and_matmul_peak():
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    flops, out = count_flops(lambda: a @ b)
    assert flops == 2 * 8 * 16 * 4 and out.shape == (8, 4)
    start = time.perf_counter()
    peak = matmul_peak(torch.float32, n=128, repeats=2)  # GFLOP/s = 2·n³·repeats / seconds / 1e9
    elapsed = time.perf_counter() - start
    assert 2 * 128 ** 3 * 2 / elapsed / 1e9 <= peak < 1e5  # at least the rate the whole call achieved, finite


def test_best_seconds_runs_warmup_and_repeats_and_keeps_the_least():
    durations = iter([0.0, 0.06, 0.01, 0.04])  # the warm-up, then three timed runs

    def fn():
        time.sleep(next(durations))
    best = best_seconds(fn, repeats=3, warmup=1)
    assert next(durations, None) is None  # exactly 1 + 3 calls
    assert 0.01 <= best < 0.04  # the shortest timed run (sleep never returns early), not the warm-up's 0


def test_matmul_share_tells_matmul_time_from_the_rest():
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    x = torch.randn(2 ** 20)
    share_mm, out = matmul_share(lambda: [a @ b for _ in range(4)])
    assert len(out) == 4 and share_mm > 0.8  # nothing but matmuls
    share_ew, _ = matmul_share(lambda: [(x * 2 + 1).exp() for _ in range(4)])
    assert share_ew == 0.0  # no matmul at all
    mixed, _ = matmul_share(lambda: (a @ b, [(x * 2 + 1).exp() for _ in range(4)]))
    assert 0.0 < mixed < share_mm


def test_write_result_leads_with_its_provenance(tmp_path):
    import json
    script = tmp_path / "benchmarks" / "b.py"
    path = write_result(tmp_path / "out" / "r.json", script, ["--steps", "2"], tmp_path, threads=1, results=[1, 2])
    record = json.loads(path.read_text())
    assert list(record)[:5] == ["command", "commit", "device", "platform", "torch"]
    assert record["platform"] == platform_id()
    assert record["command"] == "python benchmarks/b.py --steps 2" and record["commit"] is None  # not a repository
    assert record["threads"] == 1 and record["results"] == [1, 2] and record["torch"] == torch.__version__


def test_time_phases_times_each_step_and_restores_the_trainer(tmp_path):
    calls = []

    def counted(completions, **kw):
        calls.append(len(completions))
        return char_reward(completions, **kw)

    trainer = make(tmp_path, reward_fn=counted, steps=3)
    start = time.perf_counter()
    rows = time_phases(trainer, 2)
    wall = time.perf_counter() - start
    assert trainer.step == 2 and len(rows) == 2 and len(calls) == 2  # two real updates, each scored once
    for r in rows:
        assert set(r) == {"step", "generate", "score", "train", "faults"}
        assert 0 < r["generate"] < r["step"] and 0 <= r["score"] < r["step"] and 0 < r["train"] < r["step"]
        assert isinstance(r["faults"], int) and r["faults"] >= 0
    assert sum(r["step"] for r in rows) <= wall  # the steps' own clocks, within the call's
    assert "rollout" not in vars(trainer) and "score" not in vars(trainer)  # the methods are back
    trainer.train_step()  # and still work
    assert trainer.step == 3


def test_provenance_of_a_stored_result(tmp_path):
    import re
    import subprocess
    assert device_description() and re.fullmatch(r"[a-z0-9-]+", device_slug())
    assert git_commit(tmp_path) is None  # not a repository
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run(git[:5] + ["init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f.txt").write_text("a")
    subprocess.run(git + ["add", "f.txt"], check=True)
    subprocess.run(git + ["commit", "-qm", "c"], check=True)
    head = git_commit(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", head)
    (tmp_path / "f.txt").write_text("b")
    assert git_commit(tmp_path) == head + "+uncommitted"


def test_run_worker_reads_the_result_line_and_reports_failures(tmp_path, capsys):
    import sys

    from reinforce_edu.perf.provenance import report_result, run_worker
    script = tmp_path / "w.py"
    script.write_text("import sys\nfrom reinforce_edu.perf.provenance import report_result\nprint('noise')\n"
                      "report_result({'x': 1})\nreport_result({'x': int(sys.argv[1])})\n")
    res = run_worker([sys.executable, str(script), "7"], cwd=tmp_path, label="ok")
    assert res["x"] == 7 and res["wall_s"] > 0  # the last RESULT line wins
    assert run_worker([sys.executable, "-c", "raise SystemExit('boom')"], cwd=tmp_path, label="bad") is None
    assert "[bad] failed" in capsys.readouterr().err
    assert run_worker([sys.executable, "-c", "print('no result')"], cwd=tmp_path, label="silent") is None
    slow = run_worker([sys.executable, "-u", "-c", "import time; print('begun', flush=True); time.sleep(30)"],
                      cwd=tmp_path, label="slow", timeout=2)
    assert slow["timed_out_s"] == 2 and "slow did not finish within 2 s" in capsys.readouterr().out
    assert slow["partial_stdout"] == "begun\n" and abs(slow["stopped_at"] - time.time()) < 5  # what it said before
    report_result({"y": 2})
    assert capsys.readouterr().out.strip() == 'RESULT {"y": 2}'


def test_vs_trl_bounds_a_stopped_run_by_what_it_printed():
    """vs_trl --timeout: the finished steps' median, or the unfinished step's time so far where none finished."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import vs_trl
    none_done = vs_trl._stopped_steps("loading\nSTEP_BEGIN 100.0\n", stopped_at=700.0)
    assert none_done == {"finished_step_times": [], "unfinished_step_ran_s": 600.0, "s_per_step_at_least": 600.0}
    two_done = vs_trl._stopped_steps("STEP_BEGIN 0\nSTEP_END 30\nSTEP_BEGIN 30\nSTEP_END 50\nSTEP_BEGIN 80\n", 90.0)
    assert two_done["finished_step_times"] == [30.0, 50.0] and two_done["s_per_step_at_least"] == 40.0
    assert two_done["unfinished_step_ran_s"] == 10.0
