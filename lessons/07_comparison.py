# %% [markdown]
# # 07 · REINFORCE vs RLOO vs GRPO vs PPO: what each buys, what each costs
#
# **What you will learn**
# - six policy-gradient methods as **settings of one trainer**: vanilla PG (no baseline), REINFORCE with
#   a running-mean baseline, RLOO with $k=2$ and $k=4$, GRPO's std-normalised advantages, and PPO
#   with a learned critic — the same loss, baselines and KL code of lessons 01–06;
# - GRPO's normalisation $A_{ij}=(R_{ij}-\bar R_i)/\mathrm{std}_i$, checked against the formula, and the
#   per-prompt **reweighting** it brings;
# - PPO's pieces — generalised advantage estimation, the clipped ratio, the critic — and why its first
#   pass over a batch *is* REINFORCE with a learned baseline;
# - how to compare methods honestly: **the same sample budget**, several seeds, standard errors, the
#   gold reward (not the proxy) on held-out prompts, and the **cost**: seconds per step and peak memory;
# - where our measurements agree with Ahmadian et al. (2024) — RLOO $k{=}4$ > RLOO $k{=}2$ > REINFORCE
#   with baseline > vanilla PG > PPO on TL;DR — and where they do not, and why;
# - the **measured row** of the seed text's "REINFORCE vs PPO" table.
# - the same comparison in miniature on the toy task of lessons 03–04, where every score is exact: a
#   **strong** (SFT-like) and a **weak** (random) init, 20 seeds, paired differences — which pairs are
#   resolved, and how many seeds the LLM comparison would need to resolve its own;
# - the verdict on each of the seed text's 14 claims, and the lesson that tests it.
#
# On a 2-core CPU the lesson takes about 3 to 6 minutes (the faster where the CPU computes in bf16,
# lesson 00): 6 methods × 3 seeds of 4 steps each. That is
# small: what is robust at this budget is the **cost** of each method; differences in reward are judged
# with their standard errors. The toy comparison of section 9 adds about 40 s (3 seeds; the stored run has 20). `scripts/full_comparison.py` runs the same comparison longer; its stored
# result (`data/results/`) is plotted beside this run.

# %% [markdown]
# ## 0. Settings
#
# Every method trains the last 2 of SmolLM2's 30 blocks on the CPU (lesson 06), sees $B=8$ samples
# per step — $P=8$ prompts × $k=1$, $P=4$ × $k=2$ or $P=2$ × $k=4$ — for the same number of steps, at
# the same learning rate. The prompts are shared: at every step each method takes the first $P$ of the same
# 8 (`prompt_stride=8`), so a method with fewer prompts sees a subset of vanilla PG's, never other prompts. Also
# shared: $\beta=0.05$, the reward model of lesson 05 as the proxy and the gold scorer
# on the side. A fixed number of torch threads (two, the cores of the course's laptop): the numbers then
# repeat exactly on every run of the notebook on the same machine.

# %%
import json
import math
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from reinforce_edu.core.baselines import BatchMeanBaseline, LeaveOneOutBaseline
from reinforce_edu.llm.comparison import (LABELS, METHODS, method_config, paired_memory_gap, plot_curves,
                                          run_method, summarise)
from reinforce_edu.llm.data import load_prompts
from reinforce_edu.core.losses import reinforce_loss
from reinforce_edu.llm.models import load_model
from reinforce_edu.llm.ppo import clipped_surrogate, gae, token_rewards

start = time.perf_counter()
torch.set_num_threads(min(2, os.cpu_count() or 1))  # a fixed count: the same numbers on every run
CUDA = torch.cuda.is_available()
if CUDA:  # full size
    S = dict(steps=100, samples_per_step=32, max_new_tokens=48, trainable_blocks=0, learning_rate=1e-5,
             eval_prompts=80, seeds=(0, 1, 2))
else:     # 2 CPU cores: ~3 minutes where the CPU computes in bf16, ~6 without native bf16 (lesson 00)
    S = dict(steps=4, samples_per_step=8, max_new_tokens=8, trainable_blocks=2, learning_rate=3e-4,
             eval_prompts=16, seeds=(0, 1, 2))
COMMON = dict(steps=S["steps"], max_new_tokens=S["max_new_tokens"], trainable_blocks=S["trainable_blocks"],
              learning_rate=S["learning_rate"], beta=0.05, ppo_epochs=2)
print("CUDA" if CUDA else "CPU", S)

# %% [markdown]
# ## 1. Six methods, one trainer
#
# Each method is a handful of `TrainConfig` settings (`reinforce_edu.llm.comparison.METHODS`); everything
# else — sampling, the reward model, the KL to $\pi_{\rm ref}$ folded into the return
# $R=r-\beta\sum_t k_1$, AdamW, clipping — is shared:

# %%
# NBVAL_CHECK_OUTPUT
for name, spec in METHODS.items():
    cfg = method_config(name, S["samples_per_step"], **COMMON)
    print(f"{LABELS[name]:<26} P={cfg.prompts_per_step:<2} k={cfg.samples_per_prompt}  method={cfg.method:<9} "
          f"baseline={cfg.baseline:<12} advantage_scale={cfg.advantage_scale}")
assert len({method_config(n, S["samples_per_step"]).prompts_per_step * METHODS[n]["samples_per_prompt"]
            for n in METHODS}) == 1  # the same number of samples per step for every method

# %% [markdown]
# ## 2. GRPO: divide by the group's spread
#
# GRPO (Shao et al., 2024) takes the mean of the $k$ samples of a prompt — the sample itself included —
# as the baseline, and divides by their standard deviation:
#
# $$A_{ij}=\frac{R_{ij}-\frac1k\sum_l R_{il}}{\mathrm{std}_l(R_{il})+\varepsilon}.$$
#
# In the library it is one argument of the same loss, `reinforce_loss(..., baseline=BatchMeanBaseline(per_prompt=True),
# advantage_scale="group_std")`. Two prompts: one whose four answers score almost alike (an "easy"
# prompt, standard deviation 0.08), one whose answers disagree (standard deviation 1.25):

# %%
# NBVAL_CHECK_OUTPUT
R = torch.tensor([0.9, 1.0, 1.1, 1.0,     # prompt 1: every answer about as good
                  -1.0, 1.0, -1.0, 1.3])  # prompt 2: answers differ a lot
logp = torch.zeros(8, 1, requires_grad=True)
rloo = reinforce_loss(logp, R, baseline=LeaveOneOutBaseline(), group_size=4, aggregation="sum").advantages[:, 0]
grpo = reinforce_loss(logp, R, baseline=BatchMeanBaseline(per_prompt=True), group_size=4,
                      advantage_scale="group_std", aggregation="sum").advantages[:, 0]
G = R.view(2, 4)
by_hand = ((G - G.mean(1, keepdim=True)) / (G.std(1, keepdim=True) + 1e-4)).flatten()
print("RLOO advantages:", [f"{a:+.2f}" for a in rloo.tolist()])
print("GRPO advantages:", [f"{a:+.2f}" for a in grpo.tolist()])
weight = lambda a: a.view(2, 4).abs().sum(1)  # how hard each prompt pushes the gradient
print(f"prompt 1 : prompt 2 weight in the gradient — RLOO {weight(rloo)[0] / weight(rloo)[1]:.2f}, "
      f"GRPO {weight(grpo)[0] / weight(grpo)[1]:.2f}")
assert torch.allclose(grpo, by_hand)
assert weight(grpo)[0] / weight(grpo)[1] > 5 * weight(rloo)[0] / weight(rloo)[1]
assert weight(grpo)[0] / weight(grpo)[1] > 0.5  # the easy prompt pushes almost as hard as the contested one

# %% [markdown]
# RLOO's advantages are reward differences: the easy prompt, whose answers differ by a tenth, barely
# moves the policy. GRPO rescales every prompt to unit spread, so the easy prompt pushes almost as hard
# as the contested one — its tiny reward differences are amplified by the factor printed above. That makes the estimate
# scale-free (multiply the rewards by 10: nothing changes), but it is no longer the gradient of
# $J_\beta$: prompts are reweighted by $1/\mathrm{std}_i$, which Liu et al. (2025, "Dr. GRPO") call a
# difficulty bias. (The self-inclusive mean shrinks each prompt's term by $1-1/k$, lesson 04; the
# division then undoes any overall scale.)
#
# ## 3. PPO: a critic, GAE and the clipped ratio
#
# PPO (`reinforce_edu/llm/ppo.py`, its mathematics in `reinforce_edu/core/ppo.py`) pays the KL per token, $r_t=-\beta k_{1,t}$ plus the reward at the last
# token, learns a **critic** $V_\phi(s_t)$ — a second copy of the transformer with a scalar head — and
# forms **GAE** advantages $\hat A_t=\sum_l(\gamma\lambda)^l\delta_{t+l}$ with
# $\delta_t=r_t+\gamma V_\phi(s_{t+1})-V_\phi(s_t)$. It then takes `ppo_epochs` optimiser steps on the
# same batch with the clipped surrogate
# $-\min(\rho_t\hat A_t,\ \mathrm{clip}(\rho_t,1-\varepsilon,1+\varepsilon)\hat A_t)$,
# $\rho_t=\pi_\theta/\pi_{\rm old}$. Two checks, by hand:

# %%
# NBVAL_CHECK_OUTPUT
mask = torch.ones(1, 4)
r_tok = token_rewards(torch.tensor([1.0]), mask, torch.tensor([[0.1, 0.0, 0.2, 0.1]]), beta=0.5)
V = torch.tensor([[0.3, 0.4, 0.2, 0.5]])
adv, ret = gae(r_tok, V, mask, gamma=1.0, lam=1.0)
print("per-token rewards  ", [f"{x:+.2f}" for x in r_tok[0].tolist()])
print("GAE, γ = λ = 1     ", [f"{x:+.2f}" for x in adv[0].tolist()], "= reward to go − V")
ratio = torch.tensor([[1.5, 1.5, 0.5, 0.5]])
A = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
loss, frac = clipped_surrogate(ratio.log(), torch.zeros(1, 4), A, mask, clip_range=0.2, aggregation="sum")
print(f"clipped surrogate, ratios 1.5 1.5 0.5 0.5, advantages + - + -: loss {loss.item():+.2f} "
      f"(by hand -1.2 + 1.5 - 0.5 + 0.8 = {(-1.2 + 1.5 - 0.5 + 0.8):+.2f}), clipped on {frac.item():.0%} of tokens")
to_go = torch.tensor([[0.8, 0.85, 0.85, 0.95]])
assert torch.allclose(adv, to_go - V) and abs(loss.item() - 0.6) < 1e-6 and frac.item() == 0.5

# %% [markdown]
# The clip acts only where it would *reward* moving further: a ratio of 1.5 on a good token (no more
# credit beyond 1.2) or 0.5 on a bad one; the other two keep their full, unclipped penalty. At the first
# pass over a batch $\rho=1$, nothing is clipped, and the gradient is exactly
# $-\sum_t w_t\hat A_t\nabla\log\pi_\theta(y_t)$ — REINFORCE with a learned, per-token baseline
# (`tests/test_ppo.py` checks it). What PPO adds is the critic (a second model: memory, compute) and the
# extra passes over the same samples.
#
# ## 4. The comparison
#
# 6 methods × 3 seeds, each from a fresh copy of SmolLM2, each evaluated afterwards on the same
# held-out prompts (16 on the CPU) (one answer each, the same sampling seed for every method). `run_method` also
# records each run's seconds per step and the peak memory it allocated (policy copy, $\pi_{\rm ref}$,
# critic, optimiser state, activations: the rise of the process's peak RSS).

# %%
policy, tokenizer = load_model()
train_prompts, held = load_prompts("train"), load_prompts("heldout")[:S["eval_prompts"]]
results = []
for seed in S["seeds"]:
    for name in METHODS:
        results.append(run_method(name, seed, samples_per_step=S["samples_per_step"], policy=policy,
                                  tokenizer=tokenizer, prompts=train_prompts, eval_prompts=held, **COMMON))
summary = summarise(results)
print(f"{len(results)} runs in {time.perf_counter() - start:.0f} s")

# %% [markdown]
# **What each method bought.** Held-out gold reward after training (mean over 3 seeds ± standard error
# over seeds), the gold and proxy reward of the last 3 training steps, and the KL to $\pi_{\rm ref}$:

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'method':<26}{'held-out gold':>16}{'train gold':>12}{'proxy':>8}{'KL':>12}")
for name, row in summary.items():
    print(f"{row['label']:<26}{row['eval_gold']:>9.2f} ± {row['eval_gold_se']:.2f}{row['train_gold']:>12.2f}"
          f"{row['train_proxy']:>8.2f}{row['kl']:>7.2f} ± {row['kl_se']:.2f}")
assert all(math.isfinite(row["kl"]) and math.isfinite(row["eval_gold"]) for row in summary.values())
assert all(r["skipped"] == 0 for r in results)  # no update was refused (non-finite) in any run

# %% [markdown]
# **What each method cost.** Seconds per step, and memory: the peak while training above what the
# process held before the trainer was built — the policy copy, $\pi_{\rm ref}$, the critic, optimiser
# state and activations (mean ± SE over the seeds, leaving out the process's first run, which also pays
# one-time allocations: §6 shows why). Relative to RLOO $k=4$. Wall-clock and memory vary from run to
# run, so these numbers are printed unchecked; what is asserted is what must hold on any machine.

# %%
base = summary["rloo_k4"]
print(f"{'method':<26}{'s/step':>8}{'× RLOO k=4':>12}{'memory MiB':>16}{'× RLOO k=4':>12}")
for name, row in summary.items():
    mem = f"{row['memory_rise'] / 2**20:.0f} ± {row['memory_rise_se'] / 2**20:.0f}"
    print(f"{row['label']:<26}{row['s_per_step']:>8.2f}{row['s_per_step'] / base['s_per_step']:>12.2f}"
          f"{mem:>16}{row['memory_rise'] / base['memory_rise']:>12.2f}")
ppo = summary["ppo"]
others = [row for name, row in summary.items() if name != "ppo"]
assert ppo["memory_rise"] > max(r["memory_rise"] for r in others)  # the critic: a second model
assert ppo["memory_rise"] > 1.15 * base["memory_rise"]

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
plot_curves(results, "gold", ax=axes[0], smooth=3)
axes[0].set_title(f"this run (CPU, {len(S['seeds'])} seeds): training gold reward, 3-step average")
plot_curves(results, "kl", ax=axes[1])
axes[1].set_title("KL to the reference (k1, per sequence)")
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5. Against Ahmadian et al. (2024)
#
# "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human Feedback in LLMs"
# fine-tuned Pythia-6.9B on TL;DR summarisation and reported win-rates against the reference
# summaries: **RLOO k=4 77.9, RLOO k=2 74.2, REINFORCE with baseline 70.7, vanilla PG 70.4, PPO 67.6**.
# Our ordering by held-out gold reward, and which differences our 3 seeds can resolve (a gap of more
# than 2 standard errors of the difference):

# %%
# NBVAL_CHECK_OUTPUT
paper = {"rloo_k4": 77.9, "rloo_k2": 74.2, "running_mean": 70.7, "vanilla_pg": 70.4, "ppo": 67.6}
ours = sorted(paper, key=lambda n: -summary[n]["eval_gold"])
print("paper:", " > ".join(LABELS[n] for n in sorted(paper, key=lambda n: -paper[n])))
print("ours: ", " > ".join(LABELS[n] for n in ours))
resolved = []
for a, b in zip(list(paper)[:-1], list(paper)[1:]):  # the paper's neighbouring pairs
    gap = summary[a]["eval_gold"] - summary[b]["eval_gold"]
    se = math.hypot(summary[a]["eval_gold_se"], summary[b]["eval_gold_se"])
    verdict = "agrees" if gap > 2 * se else ("contradicts" if gap < -2 * se else "not resolved")
    resolved.append(verdict)
    print(f"  {LABELS[a]:<26} vs {LABELS[b]:<26} gap {gap:+.2f} ± {se:.2f}  -> {verdict}")
best_gain = summary["rloo_k4"]["eval_gold"] - summary["vanilla_pg"]["eval_gold"]
print(f"RLOO k=4 minus vanilla PG: {best_gain:+.2f} "
      f"± {math.hypot(summary['rloo_k4']['eval_gold_se'], summary['vanilla_pg']['eval_gold_se']):.2f}")
by_gold = sorted(summary, key=lambda n: -summary[n]["eval_gold"])
print(f"highest mean: {LABELS[by_gold[0]]}, lowest: {LABELS[by_gold[-1]]}; of the paper's 4 neighbouring pairs "
      f"{resolved.count('agrees')} agree, {resolved.count('contradicts')} contradict, "
      f"{resolved.count('not resolved')} are not resolved at 2 SE")
assert len(resolved) == 4 and all(math.isfinite(summary[n]["eval_gold_se"]) for n in paper)

# %% [markdown]
# **What agrees, and what does not.** At this budget — 4 steps of 8 samples, 3 seeds — the standard
# errors are as large as the gaps, and the last lines above say what this run resolved. Expect little:
# the gaps the paper reports (a few win-rate points) are far below what 3 seeds of 32 samples can
# separate, so the printed order of the means is mostly noise. Rerun the lesson on another machine —
# another CPU rounds its matmuls differently, a sampled token flips, and each run takes another path — and
# the order reshuffles; a pair that clears 2 standard errors on one machine may not on the next (with 3
# seeds the standard errors are rough themselves). That reshuffling *is* the finding at this size: it
# says how much evidence an ordering needs. Section 6
# asks whether a run with about 5× the samples does better.
#
# Why ours may differ, beyond noise:
# - **Budget.** 32 samples per run (on the CPU) against the paper's full passes over TL;DR. Early in training the
#   methods that move the policy furthest may have an edge — compare the KL column of section 4 with the
#   gold column, and mind the KL's large standard errors. PPO takes `ppo_epochs=2` optimiser steps per
#   batch, twice the others'.
# - **Prompts vs samples per prompt.** At an equal budget $k=4$ means 2 prompts per step, $k=1$ eight:
#   RLOO $k=4$ and GRPO see a quarter of the prompts per step that vanilla PG sees. With many more steps
#   both matter.
# - **The policy class.** Only the last 2 of 30 blocks train on the CPU; the paper fine-tuned all
#   of Pythia (1B and 6.9B).
# - **The reward.** A linear probe on frozen SmolLM2 features (lesson 05), judged by VADER, against a
#   6.9B reward model judged by GPT-4 win-rates. Our proxy is already centred on the data (lesson 05),
#   which acts like a baseline: vanilla PG loses less to the running mean than it would on raw rewards.
# - **PPO's critic** starts from the policy with a zero head and has 4 steps to learn; in the paper it
#   starts from the reward model and trains for thousands of steps.

# %% [markdown]
# ## 6. A larger stored run (made on a CPU)
#
# `python scripts/full_comparison.py` runs the same six methods with more samples per step, more steps
# and longer answers, and stores everything — command, git commit, device, every curve — in
# `data/results/comparison_<device>.json`. The stored run was made on a 2-core CPU (its first line below
# names it): larger than this lesson's, but not the full size of lesson 06's GPU settings — no GPU run is
# stored yet. Here it is beside this lesson's run (lines: mean over 3 seeds; bands: ± 1 standard error):

# %%
stored = sorted(Path("../data/results").glob("comparison_*.json"))
full = json.loads(stored[0].read_text()) if stored else None
if full is None:
    print("no stored larger run: python scripts/full_comparison.py writes one")
else:
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
    plot_curves(results, "gold", ax=axes[0], smooth=3)
    axes[0].set_title(f"this lesson: B={S['samples_per_step']}, {S['steps']} steps")
    plot_curves(full["runs"], "gold", ax=axes[1], smooth=3)
    axes[1].set_title(f"stored: B={full['settings']['samples_per_step']}, {full['settings']['steps']} steps "
                      f"({full['device_name']})")
    axes[1].legend(fontsize=8)
    plt.tight_layout()
    plt.show()

# %%
# NBVAL_CHECK_OUTPUT
if full is not None:
    st = full["settings"]
    print(f"stored run: {full['device']}; commit {str(full['commit'])[:10]}; B={st['samples_per_step']}, "
          f"{st['steps']} steps, {len(st['seeds'])} seeds, {st['max_new_tokens']} new tokens")
    print(f"{'method':<26}{'held-out gold':>16}{'KL':>7}{'s/step':>8}{'memory MiB':>12}")
    for name, row in full["summary"].items():
        print(f"{row['label']:<26}{row['eval_gold']:>9.2f} ± {row['eval_gold_se']:.2f}{row['kl']:>7.2f}"
              f"{row['s_per_step']:>8.2f}{row['memory_rise'] / 2**20:>12.0f}")
    fs = full["summary"]
    assert fs["ppo"]["memory_rise"] > 1.15 * fs["rloo_k4"]["memory_rise"]
    slowest_other = max(r["s_per_step"] for n, r in fs.items() if n != "ppo")  # claim 12: a stored timing, fixed
    print(f"stored run: PPO's s/step / the slowest other method's = {fs['ppo']['s_per_step'] / slowest_other:.1f}")
    assert fs["ppo"]["s_per_step"] > 1.8 * slowest_other
    gap = lambda sm, a, b: (sm[a]["eval_gold"] - sm[b]["eval_gold"],
                            math.hypot(sm[a]["eval_gold_se"], sm[b]["eval_gold_se"]))
    for a, b in (("rloo_k4", "vanilla_pg"), ("rloo_k4", "rloo_k2"), ("ppo", "rloo_k4")):
        (g_here, se_here), (g_full, se_full) = gap(summary, a, b), gap(fs, a, b)
        print(f"{LABELS[a]} - {LABELS[b]}: this lesson {g_here:+.2f} ± {se_here:.2f}, "
              f"stored run {g_full:+.2f} ± {se_full:.2f}")
    # the prose below: the larger run resolves RLOO k=4 over vanilla PG (> 2.5 SE), GRPO and PPO lead it
    g_full, se_full = gap(fs, "rloo_k4", "vanilla_pg")
    assert g_full > 2.5 * se_full
    assert set(sorted(fs, key=lambda n: -fs[n]["eval_gold"])[:2]) == {"grpo", "ppo"}
    mean_gold = lambda sm: sum(sm[n]["eval_gold"] for n in fs) / len(fs)
    print(f"held-out gold, mean of the six methods: this lesson {mean_gold(summary):.2f}, stored run {mean_gold(fs):.2f}")
    if not CUDA:  # with 6x the samples, the methods end higher on average than in this lesson's CPU run
        assert mean_gold(fs) > mean_gold(summary)
    assert all(math.isfinite(row["eval_gold"]) for row in fs.values())

# %% [markdown]
# The stored run sees 6× the samples of this lesson's CPU run (16 per step, 12 steps, 16-token answers against
# 8, 4 and 8 here) and its
# methods end higher on average (asserted). There GRPO and PPO come out on top, RLOO $k=4$ next, vanilla
# PG last, and **RLOO $k=4$ ahead of vanilla PG** is resolved by more than 2.5 standard errors (asserted),
# as in the paper. RLOO $k=4$ over $k=2$ is within noise there, and PPO against RLOO $k=4$ is about one
# standard error — not a finding. Set this lesson's gaps (printed beside them) against the stored ones,
# each with its standard error: a sign that flips between two runs is a gap neither run resolved.
# Two honest runs of different sizes ordering the middle differently *is* the lesson: at these
# budgets the fine ordering of similar estimators is noise, and a claim like "77.9 vs 74.2" needs far
# more samples and seeds than a laptop run affords (the paper trained on the TL;DR training set with a
# 6.9B model). What repeats exactly is the cost: PPO's extra model and extra passes.
#
# **Where the memory noise comes from.** In the stored table vanilla PG shows 1152 MiB and REINFORCE +
# running mean 992 — 16 % apart, though the two hold exactly the same tensors (the running mean is one
# float). Each figure there is the smallest over three seeds, and all 18 runs ran one after another in
# one process, seed round by seed round. Two things move a run's RSS rise that are not the method: the
# process's **first run** also pays one-time allocations that later runs find already made, and the heap
# of a long process **drifts** upward from round to round (measured below: the mean rise per seed round).
# Per seed, in run order:

# %%
# NBVAL_CHECK_OUTPUT
if full is not None:
    runs_full = full["runs"]
    for i, r in enumerate(runs_full):
        r.setdefault("run_index", i)  # the script ran them in one process, in this order
    print("memory rise, MiB (run order: seed 0's six methods, then seed 1's, then seed 2's)")
    for name in METHODS:
        rises = [f"{r['memory_rise'] / 2**20:.0f}" + ("*" if r["run_index"] == 0 else "")
                 for r in runs_full if r["name"] == name]
        print(f"  {LABELS[name]:<26}" + "".join(f"{x:>8}" for x in rises))
    print("  * the process's first run")
    rounds = {s: sum(r["memory_rise"] for r in runs_full if r["seed"] == s and r["run_index"])
              / sum(1 for r in runs_full if r["seed"] == s and r["run_index"]) for s in st["seeds"]}
    print("mean rise per seed round (first run left out): "
          + ", ".join(f"seed {s} {m / 2**20:.0f}" for s, m in rounds.items()) + " MiB")
    gaps = {}
    for a, b in (("vanilla_pg", "running_mean"), ("rloo_k4", "rloo_k2"), ("ppo", "rloo_k4")):
        gaps[(a, b)] = paired_memory_gap(runs_full, a, b)
        g, se, n = gaps[(a, b)]
        print(f"{LABELS[a]} - {LABELS[b]}, paired by seed ({n} pairs): {g / 2**20:+.0f} ± {se / 2**20:.0f} MiB")
    first = next(r for r in runs_full if r["run_index"] == 0)
    assert first["memory_rise"] > 1.3 * max(r["memory_rise"] for r in runs_full if r["name"] == first["name"]
                                            and r["run_index"])  # the first run's one-time allocations
    assert rounds[st["seeds"][-1]] > rounds[st["seeds"][0]]  # the heap drifts upward round by round
    g, se, _ = gaps[("vanilla_pg", "running_mean")]
    assert abs(g) < 2 * se  # equal within noise, as they must be
    g, se, _ = gaps[("ppo", "rloo_k4")]
    assert g > 5 * se  # the critic's memory is not noise

# %% [markdown]
# Found: vanilla PG's smallest figure came from seed 1 (its seed 0 was the process's first run, +1604 MiB),
# the running mean's from seed 0, a round whose heap had not yet drifted. Paired within a seed round, where
# the drift cancels, the two differ by a few MiB with an SE of about 40: **equal within noise**, as they
# must be, while PPO's critic stands about 360 MiB above RLOO $k=4$, far outside it. (RLOO $k=4$ against
# $k=2$, about 2 SE from three pairs, is not resolved.) `summarise` now leaves
# the process's first run out and reports the mean ± SE over seeds (this lesson's cost table above), and
# `paired_memory_gap` compares two methods within their seed rounds. For a memory figure to trust on its
# own, measure each method in a fresh process, as `benchmarks/memory_modes.py` does.
#
# ## 7. The seed's table, measured
#
# The seed text's "REINFORCE vs PPO" table, with our measured row (RLOO $k=4$ stands for the REINFORCE
# family; CPU settings of this lesson):

# %%
rl, pp = summary["rloo_k4"], summary["ppo"]
mem_ratio = pp["memory_rise"] / rl["memory_rise"]
time_ratio = pp["s_per_step"] / rl["s_per_step"]
print("| aspect | seed: REINFORCE | seed: PPO | measured here |")
print("|---|---|---|---|")
print(f"| memory | ~1x model size | ~2x (policy + critic) | PPO allocates {mem_ratio:.1f}x what RLOO k=4 does |")
print(f"| compute | fast | slow | PPO {time_ratio:.1f}x the seconds per step of RLOO k=4 |")
print(f"| held-out gold | — | — | RLOO k=4 {rl['eval_gold']:.2f} ± {rl['eval_gold_se']:.2f}, "
      f"PPO {pp['eval_gold']:.2f} ± {pp['eval_gold_se']:.2f} |")
print(f"| KL to reference | — | — | RLOO k=4 {rl['kl']:.2f}, PPO {pp['kl']:.2f} |")
print("| bias | unbiased gradient | biased (value function) | see below |")

# %% [markdown]
# **Reading the measured row.** *Memory*: the seed says ~2× for PPO; on the CPU setting we measure
# well under that (the row above; asserted above 1.15×). The critic is a second copy of the transformer, but with only 2 blocks trainable most of
# both models is frozen weights (stored in the compute precision, lesson 00), and the fp32 master weights, gradients and AdamW moments — 16
# bytes per trained parameter, per model — are small. Fine-tuning every parameter
# (`trainable_blocks=0`, the GPU setting) makes those dominate, and the ratio moves toward 2×.
# *Compute*: PPO's step costs a multiple of RLOO's (the row above; printed, not asserted, since a time
# depends on the machine and its load): two training passes of the policy instead of one, and a forward and backward pass of the critic in each. *Bias*: vanilla PG, the running mean and RLOO are
# unbiased estimates of $\nabla J_\beta$ (lessons 01–04; RLOO's baseline excludes the sample itself).
# GRPO's division by the group's standard deviation reweights prompts (section 2): biased. PPO's first
# pass is REINFORCE with a learned baseline — a baseline does not bias, but GAE with $\lambda<1$
# bootstraps from $V_\phi$, which does, and the later clipped passes follow a surrogate, not $\nabla J_\beta$.
# *Variance*: lesson 06 measured it on this model — once rewards drift, RLOO and the running mean stay
# flat while the variance without a baseline grows like $c^2$.

# %% [markdown]
# **What trains decides the memory.** The seed's row counts the model: ~1× its size for REINFORCE, ~2×
# for PPO (policy + critic). What a run really holds depends on *what trains*: every trained parameter
# carries an fp32 gradient and two AdamW moments, and $\pi_{\rm ref}$ is a frozen copy. The stored run of
# `benchmarks/memory_modes.py` measures three settings of the same trainer on SmolLM2-135M: every
# parameter (`trainable_blocks=0`), the last 2 blocks (`trainable_blocks=2`, this lesson's CPU setting),
# and LoRA adapters of rank 8 on every linear layer (`lora_rank=8`, `reinforce_edu.llm.lora`:
# $W' = W + \frac{\alpha}{r}BA$ with $B=0$ at the start, only $A$ and $B$ train, and $\pi_{\rm ref}$ is
# the same model with its adapters switched off — no copy). Each for REINFORCE (RLOO) and PPO, 2 steps
# at a small batch ($P=2$ × $k=2$, 16 tokens), each in a fresh process. The figures are the CPU's
# peak RSS (the CPU named in the first line, fp32), counted from before the model loaded, in MiB and in
# units of the model's fp32 weights:

# %%
# NBVAL_CHECK_OUTPUT
modes = json.loads(Path("../data/results/memory_modes_cpu_amd-epyc-zen3.json").read_text())
runs = modes["results"]
print(modes["device"], "|", modes["platform"])
print(f"{'what trains':<13}{'method':<11}{'trained params':>16}{'peak MiB':>10}{'× model':>9}")
for r in runs.values():
    print(f"{r['mode']:<13}{r['method']:<11}{r['trainable_params']:>16,}{r['total_mib']:>10.0f}"
          f"{r['total_model_sizes']:>9.1f}")
ppo_over = {m: runs[f"{m}/ppo"]["total_mib"] / runs[f"{m}/reinforce"]["total_mib"] for m in ("full", "blocks2", "lora8")}
print("PPO / REINFORCE:", ", ".join(f"{m} {x:.2f}x" for m, x in ppo_over.items()))
print(f"LoRA / every parameter: REINFORCE {runs['lora8/reinforce']['total_mib'] / runs['full/reinforce']['total_mib']:.2f}x, "
      f"PPO {runs['lora8/ppo']['total_mib'] / runs['full/ppo']['total_mib']:.2f}x")
assert runs["full/reinforce"]["total_model_sizes"] > 4  # not ~1x: gradients, AdamW moments and π_ref's copy
assert 1.6 < ppo_over["full"] < 2.2 and ppo_over["blocks2"] < ppo_over["full"]  # toward 2x when everything trains
assert ppo_over["lora8"] > ppo_over["full"]  # LoRA shrinks the policy's state, not the critic's copy
assert runs["lora8/reinforce"]["total_mib"] < runs["blocks2/reinforce"]["total_mib"] < runs["full/reinforce"]["total_mib"]

# %% [markdown]
# What the measurement says. Training every parameter, REINFORCE holds about 6× the model's size, not
# 1×: weights, gradients, two AdamW moments and $\pi_{\rm ref}$'s copy are already 5×, activations the
# rest; PPO adds a critic with the same state, and the ratio comes out at 1.8× — the seed's ~2× is
# right about the *ratio* there, not about the sizes. With 2 trained blocks most of both models is
# frozen weights and the ratio drops to 1.5× (the row above measures the same thing at this lesson's
# settings). LoRA holds the least for REINFORCE (about a third of training every parameter, below the
# 2-block run: no copy for $\pi_{\rm ref}$), but its PPO/REINFORCE ratio is the largest, above 2×:
# the critic is still a copy of the transformer (with its own adapters, `reinforce_edu.llm.lora`
# explains why) and, with adapters in every block, both the policy's and the critic's backward pass
# run through all 30 blocks, so both keep every block's activations. These are CPU RSS figures from one
# 2-core AMD EPYC (fp32) at a small batch; on a GPU with larger batches activations take a larger share.

# %% [markdown]
# ## 8. Speed against TRL, and how far from the machine's peak
#
# How fast our trainer runs the same RLOO step as TRL's `RLOOTrainer`, at each side's default and at
# matched precision, on each CPU measured — and where the train phase's time goes against the matmul
# peak — is performance engineering, not REINFORCE: it lives in `benchmarks/README.md`, with the scripts
# that measure it and their stored results. What a learner needs from it is above: the time and the
# memory each method costs.

# %%
print(f"lesson run time: {time.perf_counter() - start:.0f} s")

# %% [markdown]
# ## 9. The Ahmadian ordering in miniature: exact scores, many seeds
#
# On the LLM the gaps between methods drown in seed-to-seed noise (sections 5–6). The toy sequence task
# of lessons 03–04 has none of the LLM's unknowns: $J_\beta$, the KL and the optimum are exact sums
# over all 5461 completions of each prompt, and a run takes a second. So we repeat the comparison there
# (`reinforce_edu.toy.ordering`), with what the paper's claim is about — the **initialisation**:
#
# - **strong init**: the toy policy after `warm_up` on noisy demonstrations (the toy's SFT, as in
#   lesson 04); **weak init**: the same network's random weights;
# - the six methods of section 1 (`reinforce_edu.toy.methods`), each $B=16$ samples per step for 30
#   steps — $16\times1$, $8\times2$ or $4\times4$, every prompt seen 4 times per step by every method —
#   with $\pi_{\rm ref}$ = the init, $\beta=0.05$, the KL folded into the return, Adam at one learning rate
#   per init (0.003 from the strong init, 0.03 from the weak one: chosen so that no method reaches the
#   optimum and none stands still). PPO's critic is a second copy of the GRU with a scalar head
#   (`ToyCritic`), trained by the same `ppo_update` as the LLM's, 2 epochs per batch;
# - the score: the exact $J_\beta=\mathbb E[r]-\beta\,\mathrm{KL}(\pi\|\pi_{\rm ref})$ of the final policy,
#   `match_reward` as $r$, and how much of the gap from the init to the exact optimum
#   $J_\beta(\pi^*_\beta)$ (lesson 04) it closed;
# - seed $s$ fixes the init, the demonstrations and the sampling generator, the same for the six methods:
#   differences are **paired** (`reinforce_edu.core.significance`), and a pair is *resolved* when the mean
#   paired difference exceeds 2 standard errors.
#
# This lesson runs 3 seeds itself; `scripts/toy_ordering.py` ran 20 and stored every score in
# `data/results/toy_ordering.json`.

# %%
from reinforce_edu.core.significance import paired_difference, seeds_to_resolve
from reinforce_edu.toy.methods import TOY_LABELS
from reinforce_edu.toy.ordering import run_ordering, summarise_ordering

toy_start = time.perf_counter()
toy_here = summarise_ordering(run_ordering(seeds=(0, 1, 2)))
toy_file = json.loads(Path("../data/results/toy_ordering.json").read_text())
toy_full = toy_file["summary"]
print(f"3 seeds × 6 methods × 2 inits in {time.perf_counter() - toy_start:.0f} s; stored: "
      f"{len(toy_file['result']['settings']['seeds'])} seeds")

# %%
# NBVAL_CHECK_OUTPUT
print(f"this lesson, 3 seeds: exact J_β (mean ± SE)")
for kind, sm in toy_here.items():
    print(f"  {kind} init: J_β {sm['J0']:.3f} -> optimum {sm['J_opt']:.3f};  " +
          ", ".join(f"{TOY_LABELS[m]} {sm['rows'][m]['J']:.3f} ± {sm['rows'][m]['J_se']:.3f}" for m in sm["order"]))
    assert all(r["J"] > sm["J0"] and r["J"] < sm["J_opt"] for r in sm["rows"].values())  # all improve; none at the optimum

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for ax, kind in zip(axes, ("strong", "weak")):
    sm, here = toy_full[kind], toy_here[kind]
    names = list(TOY_LABELS)
    x = range(len(names))
    ax.bar(x, [sm["rows"][m]["J"] for m in names], yerr=[sm["rows"][m]["J_se"] for m in names], capsize=4,
           color="tab:blue", alpha=0.6, label=f"stored: {len(toy_file['result']['settings']['seeds'])} seeds (± 1 SE)")
    ax.errorbar([i + 0.25 for i in x], [here["rows"][m]["J"] for m in names],
                yerr=[here["rows"][m]["J_se"] for m in names], fmt="o", color="k", label="this lesson: 3 seeds (± 1 SE)")
    ax.axhline(sm["J0"], color="grey", ls="--", label="J_β of the init")
    ax.axhline(sm["J_opt"], color="green", ls=":", label="J_β of the exact optimum π*")
    ax.set_xticks(list(x), [TOY_LABELS[m].replace(" (", "\n(") for m in names], fontsize=7)
    lo, hi = sm["J0"], sm["J_opt"]
    ax.set_ylim(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo))
    ax.set_ylabel("exact J_β = E[r] − β·KL (reward units)")
    ax.set_title(f"{kind} init: final J_β after 30 steps of 16 samples")
axes[0].legend(fontsize=7, loc="lower right")
plt.tight_layout()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
toy_n = len(toy_file["result"]["settings"]["seeds"])
for kind in ("strong", "weak"):
    sm = toy_full[kind]
    print(f"{kind} init, {toy_n} seeds: J_β {sm['J0']:.3f} at the init, {sm['J_opt']:.3f} at the optimum")
    print(f"  {'method':<26}{'exact J_β':>16}{'gap closed':>12}{'KL':>14}")
    for m in sm["order"]:
        r = sm["rows"][m]
        print(f"  {TOY_LABELS[m]:<26}{r['J']:>9.3f} ± {r['J_se']:.3f}{r['closed']:>11.0%}{r['kl']:>8.2f} ± {r['kl_se']:.2f}")
    print("  paired differences of J_β resolved at 2 SE:")
    for p in sm["pairs"]:
        if p["resolved"]:
            hi, lo = (p["a"], p["b"]) if p["mean"] > 0 else (p["b"], p["a"])
            print(f"    {TOY_LABELS[hi]:<26} > {TOY_LABELS[lo]:<26} by {abs(p['mean']):.3f} ± {p['se']:.3f}")
    within = [f"{TOY_LABELS[p['a']]} / {TOY_LABELS[p['b']]}" for p in sm["pairs"] if not p["resolved"]]
    print(f"  within noise ({len(within)} of {len(sm['pairs'])} pairs): {'; '.join(within) or 'none'}")
    verdicts = []
    for a, b in zip(list(paper)[:-1], list(paper)[1:]):  # the paper's neighbouring pairs, section 5
        p = paired_difference(toy_file["result"][kind]["methods"][a]["J"], toy_file["result"][kind]["methods"][b]["J"])
        verdicts.append("agrees" if p.resolved and p.mean > 0 else "contradicts" if p.resolved else "not resolved")
    print(f"  against the paper's 4 neighbouring pairs: " +
          ", ".join(f"{TOY_LABELS[a]} > {TOY_LABELS[b]} {v}" for (a, b), v in zip(zip(list(paper)[:-1], list(paper)[1:]), verdicts)))
strong, weak = toy_full["strong"], toy_full["weak"]
assert all(p["resolved"] for p in strong["pairs"])  # from the strong init every pair is resolved ...
assert strong["order"] == ["ppo", "grpo", "rloo_k4", "running_mean", "rloo_k2", "vanilla_pg"]  # ... so the order is too
assert {(p["a"], p["b"]) for p in weak["pairs"] if not p["resolved"]} == {
    ("vanilla_pg", "rloo_k2"), ("vanilla_pg", "grpo"), ("running_mean", "rloo_k4"), ("rloo_k2", "grpo")}
assert all(p["mean"] < 0 for p in weak["pairs"] if p["b"] == "ppo")  # PPO first from the weak init, resolved
for sm in (strong, weak):  # the paper's pairs: RLOO k=4 > k=2 and running mean > vanilla agree; PPO last does not
    assert sm["rows"]["rloo_k4"]["J"] > sm["rows"]["rloo_k2"]["J"] and sm["rows"]["running_mean"]["J"] > sm["rows"]["vanilla_pg"]["J"]
    assert sm["order"][0] == "ppo"
lead = {k: (sm["rows"]["ppo"]["closed"] - max(r["closed"] for m, r in sm["rows"].items() if m != "ppo"))
        for k, sm in toy_full.items()}
print(f"PPO's lead over the best critic-free method, in shares of the gap to the optimum: "
      f"strong {lead['strong']:.0%}, weak {lead['weak']:.0%}")
assert lead["weak"] > lead["strong"] > 0  # the critic helps from both inits, more from the weak one

# %% [markdown]
# **The finding, against the paper.** Twenty seeds resolve the toy's ordering almost completely (the
# exact scores leave only the noise of training itself, and pairing removes what a seed's init shares
# with all six runs):
#
# - **From the strong init every pair is resolved**, and the order is PPO > GRPO > RLOO $k=4$ > running
#   mean > RLOO $k=2$ > vanilla PG. Of the paper's four neighbouring pairs two agree — RLOO $k=4$ above
#   $k=2$, the running mean above vanilla PG — and two do not: RLOO $k=2$ falls (by 0.002, at 2.2 SE)
#   below the running mean, and **PPO comes first**, not last. The differences among the four
#   baselined REINFORCE variants are small (0.002–0.006 in $J_\beta$, a few per cent of the gap to the
#   optimum); vanilla PG, with no baseline on rewards that are all near 0.9, closes half the gap the
#   others close.
# - **From the weak init** PPO leads by more (14 % of the gap against 9 %), the running mean and
#   RLOO $k=4$ follow, and four pairs stay within noise (listed above).
# - *Does the critic help from the weak init and not from the strong one?* It helps from **both**, more
#   from the weak one. The seed's "strong init: no critic needed" is right that RLOO and REINFORCE with
#   a baseline train stably without one — every method improved $J_\beta$ from both inits, none
#   diverged — but wrong, on this task, that a critic then buys nothing.
# - *Does RLOO $k=4$ lead?* It leads RLOO $k=2$ from both inits, as in the paper, but not the field.
#
# Why ours may disagree with the paper:
# - **PPO's second pass.** As in section 1, PPO takes `ppo_epochs=2` Adam steps per batch, the others
#   one: at the same samples it makes twice the updates, and its KL is the largest from both inits.
#   Whether its lead is the critic's or the second pass's, this run does not separate (a side run with
#   one epoch, 6 seeds and not stored, came out level with RLOO $k=4$); `ToyMethodConfig.ppo_epochs=1`
#   is the experiment to store next.
# - **An easy critic.** The toy's critic reads the GRU state of a six-token prefix, and the reward is a
#   deterministic function of the completion: a per-token value is easy to learn, and it gives each token
#   a baseline of the reward still to come (lesson 03 §2: that is what makes token-level credit pay). A
#   critic for a 6.9B summariser, judged against a noisy reward model, is a much harder regression.
# - **The metric and the budget.** We score the exact $J_\beta$ after 30 steps; the paper scores GPT-4
#   win-rates after full training runs. With $\beta$ and the step count changed the order of close
#   methods may move; the large gaps (vanilla PG last from the strong init, PPO first) are many SE wide.

# %% [markdown]
# ## 10. How many seeds would the LLM comparison need?
#
# Section 6's stored LLM run has 3 seeds. How large a run would resolve the paper's gaps? For each of
# the paper's neighbouring pairs we read from it the observed gap in held-out gold reward and the spread of
# the per-seed difference $d_s$ — **paired** by seed: every method of seed $s$ starts its sampling from
# the same generator seed and is evaluated with the same sampling seed, so part of the noise may cancel in
# $d_s$ (sections 5–6 compared the methods unpaired) — and
# ask how many seeds $n$ put the gap beyond 2 standard errors, $n\ge(2\,\mathrm{sd}(d)/\text{gap})^2$
# (`core.significance.seeds_to_resolve`; "1" means the 3 seeds already do). Gap and spread both come
# from 3 seeds, so the answers are orders of magnitude, not a plan; and with 3 seeds "2 SE" is a lenient
# test (Student's t with 2 degrees of freedom puts the two-sided 95 % bound at 4.3 SE). The cost is the
# stored run's training seconds per step (its CPU, 1 thread), times its 12 steps, times $n$, for the two
# methods of the pair; evaluation is extra. A longer run would change the gaps themselves, in a direction
# one budget cannot tell: the estimate holds at the stored run's 12 steps.

# %%
# NBVAL_CHECK_OUTPUT
fs, st = full["summary"], full["settings"]
gold = {(r["name"], r["seed"]): r["eval"]["gold"] for r in full["runs"]}
print(f"stored LLM run ({full['device']}): {len(st['seeds'])} seeds, {st['steps']} steps of {st['samples_per_step']} samples")
print(f"{'pair (paper: first > second)':<50}{'gap':>8}{'sd(d)':>7}{'gap/SE':>8}{'seeds':>7}{'CPU hours':>11}")
power = {}
for a, b in zip(list(paper)[:-1], list(paper)[1:]):
    p = paired_difference([gold[(a, s)] for s in st["seeds"]], [gold[(b, s)] for s in st["seeds"]], (a, b))
    sd = p.se * math.sqrt(p.n)
    n_need = seeds_to_resolve(p.mean, sd)
    hours = n_need * st["steps"] * (fs[a]["s_per_step"] + fs[b]["s_per_step"]) / 3600
    power[(a, b)] = (p, n_need)
    print(f"{LABELS[a] + ' vs ' + LABELS[b]:<50}{p.mean:>+8.3f}{sd:>7.3f}{p.mean / p.se:>+8.1f}{n_need:>7}{hours:>11.2f}")
n_all = max(n for _, n in power.values())
all_hours = n_all * st["steps"] * sum(fs[n]["s_per_step"] for n in fs) / 3600
print(f"all six methods at {n_all} seeds: {all_hours:.0f} CPU hours of training")
eval_se = sum(r["eval"]["gold_se"] for r in full["runs"]) / len(full["runs"])
between = sum(fs[n]["eval_gold_se"] * math.sqrt(len(st["seeds"])) for n in fs) / len(fs)
print(f"held-out gold of one run: SE of its evaluation on {st['eval_prompts']} prompts {eval_se:.3f}, "
      f"spread between seeds {between:.3f} (evaluation: {eval_se ** 2 / between ** 2:.0%} of the variance)")
gpu = [f.name for f in Path("../data/results").glob("comparison_*.json") if "cpu" not in f.name]
print("GPU cost: " + (", ".join(gpu) if gpu else "not measured (no stored GPU comparison)"))
pp = {k: v[0] for k, v in power.items()}
assert pp[("vanilla_pg", "ppo")].mean < -4.3 * pp[("vanilla_pg", "ppo")].se  # PPO above vanilla PG, even at t(2)
assert 2 < pp[("running_mean", "vanilla_pg")].mean / pp[("running_mean", "vanilla_pg")].se < 4.3  # 2 SE only
assert power[("rloo_k4", "rloo_k2")][1] > 10 and power[("rloo_k2", "running_mean")][1] > 100
assert eval_se ** 2 > 0.4 * between ** 2  # much of the spread between seeds is the evaluation's own noise

# %% [markdown]
# **Reading it.** Paired by seed, the stored run already resolves two of the four pairs at 2 SE: the
# running mean above vanilla PG (as in the paper, but only at 2 SE — not at the 4.3 SE a 3-seed t-test asks)
# and **PPO above vanilla PG** (against the paper, beyond 4.3 SE). RLOO $k=4$ over $k=2$ would need a
# few dozen seeds, RLOO $k=2$ over the running mean a couple of hundred — the gap there is a tenth of its
# spread. At the stored run's size that is hours of a CPU per pair and about half a day for all six
# methods (the table). A GPU would cut it to minutes, but no GPU comparison is stored, so its cost is
# not stated here. The cheaper lever is the evaluation: about half the variance between seeds is the
# noise of scoring each run on 48 held-out prompts with one sample each (the last line). More held-out
# prompts — sampling only, no training — shrink that part of $\mathrm{sd}(d)$ before a single extra seed is
# trained.

# %% [markdown]
# ## 11. The seed's 14 claims: what the course found
#
# Each claim of the seed text, the verdict of the lesson that tests it, and where (lesson § section):
#
# | # | claim (seed text) | verdict | where |
# |---|---|---|---|
# | 1 | "The gradient is unbiased for any constant baseline" | supported: the mean of the estimates stays within 4 SE of $\nabla J$ at every offset | 02 §1 “A baseline keeps the gradient unbiased”; 02 §5 “A constant baseline: the mean stays, the variance moves” |
# | 2 | Running-mean baseline: "simple, slight bias" | refuted: a running mean of *past* returns is a constant for the current sample, so unbiased (shrink 1.00 ± 0.02); folding the current batch in first biases it (0.875 ± 0.021, theory 0.875) | 02 §3 “Five baselines on the same samples” |
# | 3 | Per-prompt mean: "on-the-fly, unbiased" | partly: the mean that includes the sample shrinks $\nabla J$ by $1-1/n$ (0.90 ± 0.02 at $n=8$); leave-one-out is unbiased (1.01 ± 0.02) | 02 §6 “The seed's batch mean shrinks the gradient by $(1 - 1/n)$”; 02 §3 “Five baselines on the same samples” |
# | 4 | Variance: zero baseline highest, value function lowest | partly: the order holds on the bandit when prompt levels differ (running mean / value 2.6); with equal levels it reverses (leave-one-out / running mean 2.11 ± 0.04, about $k/(k-1)$); on the $T=32$ toy a learned $V(x)$ ties the global mean, both 11 ± 4 % below leave-one-out; on SmolLM2 (12 prompts) a ridge value on last-block features is lowest of four, but only 0.2 SE below the running mean: not resolved | 02 §3 “Five baselines on the same samples”; 02 §4 “Per-prompt versus global baselines”; 03 §4 “Long sequences: $T=32$, a reward revealed in blocks”; 06 §5 “The variance of the policy gradient on the real LLM” |
# | 5 | Token-level credit "important for long chain-of-thought responses" | partly: at $T=32$ with block rewards it lowers the variance (−32 ± 3 % with a per-position leave-one-out, −49 ± 4 % with a learned critic) but faster learning is not resolved over 10 seeds (no difference at step 20 or in steps to $J=0.31$; ahead by about 0.005 after 80 steps, about 3 SE, a small effect at the edge of resolution); with the sequence's baseline it is slower (resolved) | 03 §4 “Long sequences: $T=32$, a reward revealed in blocks”; 03 §3 “A delayed reward: learning speed” |
# | 6 | "Concentrated distributions" lower the single-sample variance | partly: sharpened at a fixed gradient scale (a logit offset), the variance falls 14.9 ± 1.6 → 2.1 ± 0.2 as the entropy drops 0.91 → 0.31 nats, but the signal-to-noise ratio rises then falls again; the old rise came from scaling the weights | 03 §6 “"Concentrated distributions lower the variance"” |
# | 7 | A frozen reference and the KL penalty keep the policy from exploiting the reward | partly: supported on the toy for $\beta$ in a range ($\beta=0$ hacks the proxy, gold collapses; $\beta=0.1$ raises gold at KL < 1; below $\beta\approx0.02$ the exact optimum is itself the hack); on the LLM, $\beta$ alone changed (3 seeds, stored), $\beta=0$ ends with *higher* held-out gold (+0.05, 2.4 SE) and gold never falls: not supported at this budget | 04 §2 “Reward hacking without a KL penalty”; 04 §3 “The reward–KL frontier”; 06 §3 “Over-optimisation: pushing the proxy harder” |
# | 8 | "Gradient clipping (max norm 1.0) is essential to prevent instability" | supported against one outlier batch (5 seeds): unclipped SGD jumps 8.6 ± 5.8 nats of KL and loses 0.24 ± 0.05 of J, unclipped Adam stalls (0.089 ± 0.020 below); clipped, both end within 0.01 of the clean run. Without an outlier, not resolved: AdamW's unclipped LLM run stayed stable | 04 §7 “Gradient clipping and one unlucky batch”; 06 §4 “Is gradient clipping essential?” |
# | 9 | "detach() on the baseline is mandatory" | supported: a learned value left in the graph ends 0.909 from the true value, detached 0.047 | 02 §7 “A learned baseline must be detached” |
# | 10 | "Strong initialization: the policy doesn't need a critic to stay stable" | partly: without a critic every method trained stably from both inits; but the critic-based PPO still led from the strong init (resolved), by less than from the weak one | 07 §9 “The Ahmadian ordering in miniature: exact scores, many seeds” |
# | 11 | Memory: REINFORCE ~1× the model, PPO ~2× | partly: the PPO/REINFORCE ratio is 1.8× when every parameter trains (1.5× with 2 blocks, above 2× with LoRA); REINFORCE itself holds ~6× the model, not 1× | 07 §7 “The seed's table, measured” |
# | 12 | Compute: REINFORCE fast, PPO slow | supported: in the stored run PPO took 5.96 s a step, 1.8× the slowest other method (vanilla PG, 3.22 s) and 2.8× RLOO k=4 (2-core AMD EPYC Zen 3); this lesson prints its own times without asserting them (they depend on the machine and its load) | 07 §4 “The comparison”; 07 §7 “The seed's table, measured” |
# | 13 | Bias: REINFORCE unbiased, PPO biased (value function) | partly: the REINFORCE estimator is unbiased (01), but the seed's own code is biased (two faults, 04 §6); PPO's bias is argued, not measured | 01 §5 “Unbiased: the mean of many estimates is $\nabla_\theta J$”; 04 §6 “The seed's faults, corrected — and measured”; 07 §7 “The seed's table, measured” |
# | 14 | RLOO/REINFORCE outperform PPO from a strong init (RLOO k=4 > k=2 > REINFORCE + baseline > vanilla > PPO) | refuted on the toy: PPO first from both inits, all strong-init pairs resolved, 2 of the paper's 4 pairs agree; on the LLM not resolved at 3 seeds (PPO above vanilla PG when paired) | 07 §9 “The Ahmadian ordering in miniature: exact scores, many seeds”; 07 §5 “Against Ahmadian et al. (2024)”; 07 §10 “How many seeds would the LLM comparison need?” |

# %% [markdown]
# ## Summary

# %%
# NBVAL_CHECK_OUTPUT
print(f"| measured ({'CUDA' if CUDA else 'CPU'} settings, {len(S['seeds'])} seeds, B={S['samples_per_step']}, "
      f"{S['steps']} steps) | value |")
print("|---|---|")
for name, row in summary.items():
    print(f"| held-out gold, {row['label']} | {row['eval_gold']:.2f} ± {row['eval_gold_se']:.2f} |")
print(f"| GRPO weight of an easy prompt vs RLOO's (section 2) | {weight(grpo)[0] / weight(grpo)[1] / (weight(rloo)[0] / weight(rloo)[1]):.0f}x |")
others = [row for name, row in summary.items() if name != "ppo"]
print(f"| PPO: more memory than every other method | "
      f"{summary['ppo']['memory_rise'] > max(r['memory_rise'] for r in others)} |")

# %% [markdown]
# | idea | where in the library |
# |---|---|
# | six methods as settings of one trainer | `comparison.METHODS`, `method_config`, `run_method`, `summarise` |
# | GRPO's std normalisation | `losses.reinforce_loss(..., advantage_scale="group_std")` |
# | PPO: critic, GAE, clipped surrogate, epochs | `ppo.ValueModel`, `gae`, `clipped_surrogate`, `clipped_value_loss`, `ppo_update`; `TrainConfig(method="ppo")` |
# | peak memory, FLOPs, matmul peak | `measure.PeakMemory`, `count_flops`, `matmul_peak` |
# | memory by what trains (every parameter, 2 blocks, LoRA) | `benchmarks/memory_modes.py` → `data/results/memory_modes_*.json`; `llm.lora` |
# | the larger stored comparison (CPU) | `scripts/full_comparison.py` → `data/results/comparison_<device>.json` |
# | our trainer against TRL's RLOOTrainer; where the time goes | `benchmarks/README.md` |
# | the six methods on the toy task, strong vs weak init, exact $J_\beta$ | `toy.methods.run_toy_method`, `ToyCritic`; `toy.ordering`; `scripts/toy_ordering.py` → `data/results/toy_ordering.json` |
# | paired differences over seeds; seeds needed to resolve a gap | `core.significance.paired_difference`, `seeds_to_resolve` |
# | PPO's mathematics shared by the LLM and the toy | `core.ppo` (`gae`, `clipped_surrogate`, `ppo_update`) |
#
# **What to try next**
# - `python -m reinforce_edu.train --method ppo --baseline none --samples-per-prompt 1 --ppo-epochs 4`:
#   more passes per batch — does the clip fraction (`clip_fraction` in the log) rise?
# - GRPO without its self-inclusive mean: `--baseline rloo --advantage-scale group_std`.
# - Raise the budget until the reward differences resolve: `scripts/full_comparison.py --steps 40
#   --samples-per-step 32` (about an hour on 2 cores; minutes on a GPU).
# - `python benchmarks/vs_trl.py`: where does TRL spend the time ours saves? (Read its docstring first.)

# %% [markdown]
# ## Exercises
#
# Each exercise asks you to write, from its formula, something the library implements. While a check runs,
# the library's own version of it is unavailable, so your answer must not call `reinforce_edu`. The check
# below each answer tries your function on several inputs and says what was expected, for which input,
# which usual mistake gives exactly your answer, and what to revisit. In a class, work in the released
# assignment (`python -m reinforce_edu.teaching.assignments release DIR`): there the worked solutions below
# are stripped. (Instructors: these cells carry nbgrader markup; see the README.)

# %% nbgrader={"grade": false, "grade_id": "setup_07", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch

from reinforce_edu.teaching import exercises


# %% [markdown] nbgrader={"grade": false, "grade_id": "grpo_advantages_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Exercise 15 — GRPO's group normalisation
#
# `rewards` `(B,)` hold the returns of P prompts × k samples, the k samples of each prompt adjacent. Return
# GRPO's advantages $A_{ij} = (R_{ij} - \mathrm{mean}_i)/(\mathrm{std}_i + \varepsilon)$, shape `(B,)`, where the mean and
# the **unbiased** std (divide by k − 1) are over prompt i's own k returns. A group whose returns are all equal
# must get advantages 0, not NaN.

# %% nbgrader={"grade": false, "grade_id": "grpo_advantages", "locked": false, "schema_version": 3, "solution": true, "task": false}
def grpo_advantages(rewards, k, eps):
    ### BEGIN SOLUTION
    grouped = rewards.view(-1, k)  # (P, k)
    mean, std = grouped.mean(dim=1, keepdim=True), grouped.std(dim=1, keepdim=True)  # (P, 1) each, std unbiased
    return ((grouped - mean) / (std + eps)).reshape(-1)  # (B,)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "grpo_advantages_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
exercises.check_grpo_advantages(grpo_advantages)
### BEGIN HIDDEN TESTS
exercises.check_grpo_advantages(grpo_advantages, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "ppo_clip_loss_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Exercise 16 — PPO's clipped surrogate
#
# Inputs: `logp` (with gradient), `old_logp`, per-token advantages `advantages` and `mask`, all `(B, T)`, and
# the clip range $\varepsilon$. With $\rho_t = \exp(\log\pi_\theta - \log\pi_\text{old})$, return the token mean of
# $\max(-\rho_t\hat A_t,\ -\mathrm{clip}(\rho_t, 1-\varepsilon, 1+\varepsilon)\hat A_t)$ over the unmasked tokens (the
# pessimistic bound: the clip only removes the credit for moving further). `old_logp` and $\hat A$ are
# constants. The check compares the gradient too: zero on the tokens where the clip binds.

# %% nbgrader={"grade": false, "grade_id": "ppo_clip_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def ppo_clip_loss(logp, old_logp, advantages, mask, clip_range):
    ### BEGIN SOLUTION
    ratio = torch.exp((logp - old_logp.detach()) * mask)  # (B, T); 1 on padding
    adv = advantages.detach()
    per_token = torch.maximum(-ratio * adv, -ratio.clamp(1 - clip_range, 1 + clip_range) * adv)  # (B, T)
    return (per_token * mask).sum() / mask.sum()  # token mean
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ppo_clip_loss_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
exercises.check_ppo_clip_loss(ppo_clip_loss)
### BEGIN HIDDEN TESTS
exercises.check_ppo_clip_loss(ppo_clip_loss, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "when_critic_pays_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Exercise 17 — when does a critic pay? (written, 2 points)
#
# PPO trains a second model, the critic $V_\phi(s_t)$, to give a per-token baseline; RLOO gets its baseline from
# the other $k-1$ samples of the same prompt. In 4–8 sentences, in the cell below: what does each cost, in
# samples, memory and compute? In which situation would you expect the critic to pay for itself, and in which
# not? Use what this lesson measured. (Graded by hand.)

# %% [markdown] nbgrader={"grade": true, "grade_id": "when_critic_pays", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# ### BEGIN SOLUTION
# **Model answer.** RLOO's baseline costs $k \ge 2$ samples per prompt and nothing else; it is unbiased and
# per-prompt, but one number per completion (no credit inside the sequence). The critic costs a second model
# (memory for its weights, gradients and optimiser state; a forward and backward pass per step: this lesson
# measured PPO's memory above every other method, and its time per step at 1.8× the slowest other method in the stored run) and it is biased
# while it is still wrong. It pays when its per-token values carry information the group cannot: long
# completions with intermediate signal (per-token KL or dense rewards), where a per-token baseline cuts the
# variance of credit assignment (lesson 03); when sampling is so expensive that $k = 1$ per prompt; or when the
# batch is reused for several epochs (with the clip), so the cost of the critic is spread over more updates. It
# does not pay with one sparse reward at the end of short completions and cheap sampling: the leave-one-out
# mean of $k$ samples is already a good per-prompt baseline. In this lesson the question is then whether PPO's
# gold reward beats RLOO's by more than the comparison's standard errors, for its extra memory and time.
#
# **Rubric (2 points).** 1 point: the costs on both sides, named concretely (a second model: memory and
# compute, bias while it learns; versus $k$ samples per prompt). 1 point: a situation where the critic pays
# (dense/per-token signal, long sequences, $k = 1$, reused batches) and one where it does not (sparse terminal
# reward, cheap sampling), tied to a measured figure of this lesson. No point for "PPO is more stable" without
# a reason.
# ### END SOLUTION
