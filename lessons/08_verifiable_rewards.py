# %% [markdown]
# # 08 · REINFORCE with verifiable rewards: GRPO, Dr. GRPO and DAPO on tasks a program can check
#
# **What you will learn**
# - where REINFORCE-family fine-tuning of LLMs went after a learned reward model: **verifiable rewards** — a
#   program checks the answer, $r\in\{0,1\}$ (DeepSeek-R1's GRPO, Dr. GRPO, DAPO, the TRL/verl/OpenRLHF
#   recipes) — trained with the same `reinforce_loss`, baselines and trainer as lessons 01–07;
# - how to write such a reward so that bad input never breaks a run: an unreadable answer scores 0, a
#   checker that raises is reported with the answer it choked on, a NaN never reaches the loss;
# - **pass@k** and its unbiased estimator (Chen et al. 2021), and how to read "RL sharpens": pass@1 against
#   pass@8 before and after training;
# - **zero-variance groups**: with 0/1 rewards a prompt whose $k$ answers all pass or all fail gets zero
#   advantage under RLOO and GRPO — how many samples that wastes, against $k$ and the pass rate, and
#   DAPO's remedy (drop them) as a trainer option;
# - GRPO's per-sequence mean and std scaling against **Dr. GRPO** (no std, a constant normaliser) and DAPO's
#   token mean: the **length** of right and wrong answers over training; the **entropy** per token;
# - the variance of the gradient per baseline on this task, at $k=2,4,8$ (the tools of lessons 02 and 06).
#
# The CI run below is tiny (a few steps of each method, one seed: on a 2-core CPU without native bf16 the
# lesson takes a few minutes); `scripts/verifiable_run.py` runs the same methods 10× longer with three seeds, and
# its stored result is plotted beside it. What a few steps cannot resolve is said so, with the numbers.

# %% [markdown]
# ## 0. Settings
#
# Lesson 06's CPU choice: the last 2 of SmolLM2's 30 blocks train, fp32 where the CPU has no fast bf16.
# With CUDA the settings switch to a larger configuration — **not yet run**: no GPU was available where
# this lesson was written (the numbers stored with the notebook are the CPU's).

# %%
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: on a shared CPU, idle threads sleep

import matplotlib.pyplot as plt
import torch

from reinforce_edu.core.baselines import BatchMeanBaseline, LeaveOneOutBaseline, NoBaseline
from reinforce_edu.core.groups import expected_zero_variance_fraction, zero_variance_groups
from reinforce_edu.core.passk import pass_at_k_change, pass_at_k_curve
from reinforce_edu.core.significance import all_pairs, mean_se, mean_se_along, paired_difference
from reinforce_edu.llm.config import TrainConfig
from reinforce_edu.llm.data import DATA_DIR
from reinforce_edu.llm.logprobs import completion_logprobs
from reinforce_edu.llm.rewards import compute_rewards
from reinforce_edu.llm.sampling import sample
from reinforce_edu.llm.tasks import load_tasks, solve
from reinforce_edu.llm.variance import gradient_variance, score_gradients
from reinforce_edu.llm.verifiable import CheckerError, correctness_reward, score_completions, verifiable_reward
from reinforce_edu.llm.verifiable_runs import METHODS, first_last, train_method

start = time.perf_counter()
torch.set_num_threads(min(2, os.cpu_count() or 1))  # the same numbers on every run
CUDA = torch.cuda.is_available()
if CUDA:  # not yet run: no GPU was available where this lesson was written
    S = dict(steps=100, prompts_per_step=16, samples_per_prompt=8, max_new_tokens=32, trainable_blocks=0,
             learning_rate=1e-5, eval_prompts=80, eval_n=8, var_prompts=32, seeds=[0, 1, 2])
else:     # 2 CPU cores
    S = dict(steps=4, prompts_per_step=4, samples_per_prompt=4, max_new_tokens=12, trainable_blocks=2,
             learning_rate=3e-4, eval_prompts=16, eval_n=8, var_prompts=8, seeds=[0])
BASE = TrainConfig(prompts_per_step=S["prompts_per_step"], samples_per_prompt=S["samples_per_prompt"],
                   max_new_tokens=S["max_new_tokens"], trainable_blocks=S["trainable_blocks"],
                   learning_rate=S["learning_rate"], beta=0.0, temperature=1.0, steps=S["steps"],
                   output_dir="runs/08", progress=False)
print("CUDA (not yet run)" if CUDA else "CPU", S)

# %% [markdown]
# ## 1. Tasks a program can check
#
# `reinforce_edu/llm/tasks.py` holds four families of questions, generated offline and deterministically:
# small sums, the larger of two numbers, a word in capitals, a word repeated. Every instance of a family
# is enumerated, shuffled with a fixed seed and cut into **train** and **held-out** parts that share no
# instance (`scripts/make_tasks.py` writes `data/tasks_{train,heldout}.jsonl`). The answer is read back
# from the prompt alone (`tasks.solve`), so a reward function needs nothing else.
#
# The reward (`reinforce_edu/llm/verifiable.py`) is $r=\mathbb 1[\text{the answer is right}]$: a number
# is read as the *last* integer of the answer (GSM8K's convention: "14 + 5 = 19" answers 19), a word must
# appear whole, case included. An optional format term adds $w\cdot\mathbb 1[\text{one word alone}]$.
# The functions keep **TRL's signature** — `f(completions, prompts=..., **kwargs)`, dataset columns such
# as `answer` passed by keyword — so the same functions go into TRL's `GRPOTrainer(reward_funcs=[...])`.

# %%
# NBVAL_CHECK_OUTPUT
train_tasks, held_tasks = load_tasks("train"), load_tasks("heldout")
train_prompts = [t["prompt"] for t in train_tasks]
held = held_tasks[:S["eval_prompts"]]
held_prompts = [t["prompt"] for t in held]
print(f"{len(train_tasks)} train tasks, {len(held_tasks)} held-out, shared: "
      f"{len(set(train_prompts) & {t['prompt'] for t in held_tasks})}")
for t in held_tasks[:4]:
    print(f"  {t['task']:<7} {t['prompt']!r} -> {solve(t['prompt'])!r}")
answers = ["19", "14 + 5 = 19.", "The answer is 20", "", "?!", "nineteen"]
print("rewards:", correctness_reward(answers, prompts=["What is 7 + 12? Answer with just the number."] * 6))
print("with a format term 0.5:", verifiable_reward(0.5)(answers[:3], answer=["19"] * 3))
assert not set(train_prompts) & {t["prompt"] for t in held_tasks}


# %% [markdown]
# Bad input. An unreadable answer is simply wrong (0 above, no exception). A *checker* that raises is a
# bug in the reward, not in the answer: it stops the run and names the answer it choked on. A reward
# that returns NaN is refused by `rewards.compute_rewards` before anything reaches the loss.

# %%
# NBVAL_CHECK_OUTPUT
def fragile(completion, answer):  # int("five") raises
    return int(completion.strip()) == int(answer)

try:
    score_completions(fragile, ["19", "five"], ["19", "19"])
except CheckerError as err:
    print("CheckerError:", err)
try:
    compute_rewards(lambda completions, **kw: [float("nan")] * len(completions), ["19"], ["p"])
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ## 2. The runs
#
# Three methods, each a setting of the same trainer (`llm/verifiable_runs.py`; the loss is
# `core.losses.reinforce_loss`):
#
# | method | advantage $A_{ij}$ | token weight $w_{it}$ | groups |
# |---|---|---|---|
# | GRPO | $(R_{ij}-\bar R_i)/(\mathrm{std}_i+\varepsilon)$ | $1/(B\,\lvert y_i\rvert)$ (`seq_mean`) | all |
# | Dr. GRPO | $R_{ij}-\bar R_i$ | $1/(B\,T_{\max})$ (`constant`) | all |
# | DAPO | $(R_{ij}-\bar R_i)/(\mathrm{std}_i+\varepsilon)$ | $1/\sum_j\lvert y_j\rvert$ (`token_mean`) | zero-variance groups dropped |
#
# $\beta=0$ (no KL: the R1-Zero recipes drop it), temperature 1, the same prompts and seeds for every
# method. Before training, $n=8$ answers to each held-out task are sampled from the model as it starts.

# %%
runs = []
for method in ("grpo", "dr_grpo", "dapo"):
    for seed in S["seeds"]:
        runs.append(train_method(method, seed, BASE, train_prompts, held_prompts, eval_n=S["eval_n"],
                                 before=not runs))
        if len(runs) > 1:
            runs[-1].pop("trainer")  # the first run's trainer is kept (its frozen reference serves below)
before = torch.tensor(runs[0]["before"])  # (P, n) 0/1, the model before training
print(f"{len(runs)} runs of {S['steps']} steps")

# %% [markdown]
# ## 3. Where training starts: pass rate and pass@k
#
# The start pass rate must be neither 0 (no sample would ever be rewarded: no gradient) nor 1. Pass@1 is
# estimated from $n=8$ sampled answers (temperature 1) per held-out task, with the SE over tasks. The four task
# families (`llm/tasks.py`) were picked for a start between about 10 % and 60 %: 0.12 ± 0.03 over the 32 tasks of
# the stored run in §8, and the line below over this run's 16.
# **pass@k** — the chance that at least one of $k$ answers is right — is estimated without bias by drawing
# the $k$ *without replacement* from the $n$: $1-\binom{n-c}{k}/\binom{n}{k}$ (`core/passk.py`; the
# plug-in $1-(1-c/n)^k$ underestimates it, Jensen).

# %%
# NBVAL_CHECK_OUTPUT
per_task = before.mean(dim=1)  # (P,) pass rate of each held-out task
p0, p0_se = (x.item() for x in mean_se_along(per_task, 0))  # mean over the P tasks, sd / √P
print(f"start pass@1 (sampled, T = 1): {p0:.3f} ± {p0_se:.3f} over {len(per_task)} held-out tasks")
for fam in ("add", "larger", "upper", "repeat"):
    rows = [i for i, t in enumerate(held) if t["task"] == fam]
    print(f"  {fam:<7} {per_task[rows].mean().item():.2f} ({len(rows)} tasks)")
curve0 = pass_at_k_curve(before)
print("pass@k before:", ", ".join(f"k={k}: {m:.2f}±{se:.2f}" for k, (m, se) in curve0.items() if k in (1, 2, 4, 8)))
# the task mix is solved sometimes, as training needs: above 0, and the 10–60 % aimed at within 2 SE (16 tasks:
# the SE is about 0.04, and bf16 and fp32 machines sample different answers)
assert p0 > 0 and p0 + 2 * p0_se >= 0.10 and p0 - 2 * p0_se <= 0.60
assert curve0[8][0] > curve0[1][0] + 2 * curve0[1][1]  # more tries find more answers: pass@8 > pass@1

# %% [markdown]
# **After training.** Each run's policy answers the same held-out tasks with the same sampling seed. The
# change of pass@1 is paired over tasks (the same task before and after), so its SE is that of the
# per-task differences.

# %%
# NBVAL_CHECK_OUTPUT
def paired(after_m, before_m, k=1):  # pass@k after minus before, paired over the same tasks: (mean, SE)
    d = pass_at_k_change(torch.tensor(after_m), before_m, k)  # one run: its SE is over the tasks
    return d["mean"], d["se_prompts"]


print(f"{'method':<9}{'seed':>5}{'pass@1':>8}{'pass@8':>8}{'Δpass@1':>15}{'Δpass@8':>15}")
deltas = {}
for r in runs:
    c = pass_at_k_curve(torch.tensor(r["after"]), [1, 8])
    d1, d8 = paired(r["after"], before, 1), paired(r["after"], before, 8)
    deltas[(r["method"], r["seed"])] = (d1, d8)
    print(f"{r['method']:<9}{r['seed']:>5}{c[1][0]:>8.2f}{c[8][0]:>8.2f}{d1[0]:>+9.2f} ± {d1[1]:.2f}"
          f"{d8[0]:>+9.2f} ± {d8[1]:.2f}")
beyond = lambda z: [f"{m} seed {s}" for (m, s), ((d, se), _) in deltas.items() if abs(d) > z * se]  # noqa: E731
print("changes of pass@1 beyond 2 SE:", ", ".join(beyond(2)) or "none", "| beyond 3 SE:", ", ".join(beyond(3)) or "none")
assert not beyond(3)  # with several runs compared, nothing this short resolves a change of pass@1

# %% [markdown]
# Read the table with its standard errors and with the number of comparisons in mind. A few steps of one seed
# move pass@1 by a few hundredths either way; when three runs are compared, one of them lands beyond 2 SE by
# chance about one time in seven, so the line above also gives 3 SE — and nothing is resolved beyond that
# (asserted). A change this short is noise, not a property of a method. Whether RL raises pass@1 at all, and
# whether pass@8 moves less (the "sharpening" reading), is **not resolved at this budget**; the stored 40-step run
# in §8 resolves the first (pass@1 rises in every method) but not the second.

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
ks = list(curve0)
ax.plot(ks, [curve0[k][0] for k in ks], "k-o", label="before")
for r in runs:
    c = pass_at_k_curve(torch.tensor(r["after"]))
    ax.plot(ks, [c[k][0] for k in ks], "-o", ms=3, label=f"{r['method']} (seed {r['seed']})")
ax.set_xlabel("k (answers per task)")
ax.set_ylabel("pass@k (fraction of held-out tasks)")
ax.set_title("pass@k before and after the CI run")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Zero-variance groups: samples that teach nothing
#
# With $R\in\{0,1\}$ and the group mean (or leave-one-out) as baseline, a prompt whose $k$ answers all
# pass or all fail has $A_{ij}=0$ for every $j$: its $k$ samples were paid for and move nothing. For a
# prompt with pass rate $p_i$ that happens with probability $p_i^k+(1-p_i)^k$ (`core/groups.py`). From the
# 8 answers per held-out task sampled before training, cut into groups of $k$:

# %%
# NBVAL_CHECK_OUTPUT
zv = {}
for k in (2, 4, 8):
    groups = before.view(-1, k)  # (P·8/k, k): disjoint groups of k answers of the same task
    zv[k] = zero_variance_groups(groups).double()
    predicted = expected_zero_variance_fraction(per_task.double(), k)
    frac, frac_se = (x.item() for x in mean_se_along(zv[k], 0))  # fraction of unanimous groups, ± SE over groups
    print(f"k={k}: zero-variance groups {frac:.2f} ± {frac_se:.2f}"
          f"  (p^k + (1-p)^k from each task's pass rate: {predicted:.2f})")
print(f"of which all-fail at k=8: {(before.sum(1) == 0).double().mean().item():.2f}")
assert zv[2].mean() > zv[8].mean()  # a bigger group is less often unanimous


# %% [markdown]
# Before training about 0.2 of the answers pass, mostly concentrated on a few tasks: at $k=2$ nearly three groups
# in four are unanimous, at $k=8$ still more than a third — almost all of those all-fail (the task is out of the
# model's reach) — and $p_i^k+(1-p_i)^k$ from each task's observed pass rate predicts the measured fractions
# within their SE. Bigger groups waste less (asserted), at the price of more samples per prompt.

# %% [markdown]
# In training, each step logs `zero_variance_groups`, the fraction of its $P$ prompts whose $k=4$ rewards
# were equal — the fraction of that step's samples wasted. DAPO drops those groups
# (`TrainConfig.group_filter="drop_zero_variance"`; a step with no group left is skipped) and refills the batch
# by sampling more; here the batch simply shrinks, so the log shows the cost directly:

# %%
# NBVAL_CHECK_OUTPUT
for r in runs:
    f = [rec["zero_variance_groups"] for rec in r["log"]]
    skipped = sum(rec["skipped"] is not None for rec in r["log"])
    print(f"{r['method']:<9} seed {r['seed']}: zero-variance groups per step {', '.join(f'{x:.2f}' for x in f)}; "
          f"mean {sum(f) / len(f):.2f}; steps skipped {skipped}")
all_f = [rec["zero_variance_groups"] for r in runs for rec in r["log"]]
wasted = sum(all_f) / len(all_f)
print(f"fraction of the samples that carried no gradient, every step of every run: {wasted:.2f} "
      f"(of {S['prompts_per_step'] * S['samples_per_prompt']} per step)")
assert wasted > 0.25  # at this pass rate a large share of every batch is wasted
assert all(rec["skipped"] in (None, "every group has zero reward variance") for r in runs for rec in r["log"])

# %% [markdown]
# ## 5. Length bias: GRPO, Dr. GRPO, DAPO
#
# GRPO weighs each token of answer $i$ by $1/\lvert y_i\rvert$: a *wrong* answer ($A<0$) is penalised
# less per token the longer it is, a *right* one rewarded more the shorter — so wrong answers can grow
# (Liu et al. 2025). Dr. GRPO weighs every token alike ($1/T_{\max}$) and drops the std; DAPO averages over
# all tokens of the batch. The runs log the mean length of the right and of the wrong answers of every
# step (tokens, EOS excluded):

# %%
# NBVAL_CHECK_OUTPUT
def mean_of(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else float("nan")

print(f"{'method':<9}{'wrong: first':>14}{'last step':>11}{'right (all steps)':>19}")
for r in runs:
    wrong = [float("nan") if rec["length_wrong"] is None else rec["length_wrong"] for rec in r["log"]]
    print(f"{r['method']:<9}{wrong[0]:>14.1f}{wrong[-1]:>11.1f}{mean_of(rec['length_right'] for rec in r['log']):>19.1f}")
assert all(rec["length_wrong"] is None or rec["length_wrong"] <= S["max_new_tokens"] for r in runs for rec in r["log"])
# at this budget the three methods' lengths are not resolved apart: see the stored run below


# %% [markdown]
# In four steps the wrong answers of all three methods got shorter (from 11 tokens, near the limit of 12, to
# about 7) — the same in every method, and from one seed: the methods are **not resolved apart at this budget**.
# GRPO's bias toward long wrong answers did not appear; the stored run in §8 checks the same over 40 steps, 3 seeds.

# %% [markdown]
# ## 6. Entropy per token
#
# Every step logs the mean entropy of $\pi_\theta$ at the sampled positions (nats per token). A collapse
# (the policy answering one way with certainty) stops exploration, and with it the reward's variance.
# Temperature acts on it directly: the same answers, scored at $\tau=0.7$ instead of 1, have the entropy below.

# %%
# NBVAL_CHECK_OUTPUT
for r in runs:
    e = [rec["entropy"] for rec in r["log"]]
    print(f"{r['method']:<9} seed {r['seed']}: entropy per token, step 1 {e[0]:.2f}, last {e[-1]:.2f} nats")
ref_model = runs[0]["trainer"].ref.float()  # fp32 here: a bf16 trainer keeps its linears in bf16
tok = runs[0]["trainer"].tokenizer
ro = sample(ref_model, tok, held_prompts[:8], k=2, max_new_tokens=S["max_new_tokens"], seed=3)
ent = {}
for tau in (1.0, 0.7):
    with torch.no_grad():
        _, h = completion_logprobs(ref_model, ro.input_ids, ro.attention_mask, ro.prompt_length, temperature=tau,
                                   return_entropy=True)
    ent[tau] = (h * ro.completion_mask).sum().item() / ro.completion_mask.sum().item()
print(f"the model before training, same answers: entropy {ent[1.0]:.2f} nats/token at T=1, {ent[0.7]:.2f} at T=0.7")
assert ent[0.7] < ent[1.0]


# %% [markdown]
# In four steps the entropy per token barely moves (about 2.1 nats at the first and the last step, every
# method); the stored run in §8 shows it falling by a third to a half over forty. Temperature is the direct lever: $\tau=0.7$ halves
# the entropy of the very same answers (asserted: lower). A lower sampling temperature also changes *what*
# is optimised — the tempered policy — which is why the trainer computes its log-probs at the same $\tau$.

# %% [markdown]
# ## 7. The variance of the gradient per baseline, on 0/1 rewards
#
# Lesson 06's measurement (per-sample score gradients of the last block, `llm.variance`) on this task: the
# same $n=8$ answers per training task, cut to groups of $k=2,4,8$, with no baseline, leave-one-out (RLOO) and
# the group mean (GRPO's, without the std). $\mathrm{Var}(\hat g)$ is per prompt, ± its SE over prompts.

# %%
vprompts = train_prompts[:S["var_prompts"]]
rv = sample(ref_model, tok, vprompts, k=8, max_new_tokens=S["max_new_tokens"], seed=4)
Rv = compute_rewards(correctness_reward, rv.completions, rv.repeated_prompts).view(len(vprompts), 8)
scores = score_gradients(ref_model, rv).view(len(vprompts), 8, -1)  # (P, 8, D)

# %%
# NBVAL_CHECK_OUTPUT
baselines = {"none": NoBaseline(), "rloo": LeaveOneOutBaseline(), "group_mean": BatchMeanBaseline(per_prompt=True)}
var = {}
print(f"pass rate of these answers {Rv.mean().item():.2f}; variance relative to no baseline at the same k")
for k in (2, 4, 8):
    rows = gradient_variance(scores[:, :k].reshape(-1, scores.shape[-1]), Rv[:, :k].contiguous(), baselines)
    var[k] = {r["baseline"]: (r["variance"], r["variance_se"]) for r in rows}
    none = var[k]["none"][0]
    print(f"k={k}: " + "  ".join(f"{n} {v / none:.2f} ± {se / none:.2f}" for n, (v, se) in var[k].items()))
for k in var:
    gap = (var[k]["rloo"][0] - var[k]["none"][0]) / max(math.hypot(var[k]["rloo"][1], var[k]["none"][1]), 1e-30)
    print(f"k={k}: RLOO minus none = {gap:+.1f} SE")
# the group mean includes the sample itself: A = R − mean = (k−1)/k · (R − leave-one-out mean), exactly
assert all(abs(var[k]["group_mean"][0] / var[k]["rloo"][0] - ((k - 1) / k) ** 2) < 1e-4 for k in var)

# %% [markdown]
# The one exact statement: GRPO's group mean includes the sample itself, so its advantage is leave-one-out's
# times $(k-1)/k$ and its variance $((k-1)/k)^2$ times RLOO's — $0.25$ at $k=2$, $0.77$ at $k=8$ (asserted):
# the same direction, a shorter step, which the learning rate or Adam absorbs. Whether RLOO beats no baseline
# on these 0/1 rewards is **not a claim at this budget**: most groups are unanimous (section 4), where every
# baseline gives a zero advantage, and 8 prompts leave the standard errors wide — the line above gives the gap
# in SEs. Lesson 06 measured the same comparison on a reward model's continuous rewards.

# %% [markdown]
# ## 8. The stored, longer run: four methods, three seeds, forty steps
#
# `scripts/verifiable_run.py` runs the same methods — with RLOO beside them — 10× longer, with three seeds, and
# stores every curve with its command, commit and device (`data/results/verifiable_40steps_*.json`; the same
# CPU settings as the CI run above, 32 held-out tasks × 8 answers). Each change of pass@k is paired over the
# same tasks (the "before" answers are shared by every run) and given two standard errors: over the 32 tasks
# (which tasks happened to be drawn) and, in brackets, over the 3 seeds (how runs differ).

# %%
# NBVAL_CHECK_OUTPUT
load_stored = lambda name: json.loads((DATA_DIR / "results" / name).read_text())  # noqa: E731
stored = load_stored("verifiable_40steps_cpu_amd-epyc-zen4.json")
st = stored["settings"]
print(stored["command"])
print(f"{stored['device']} | {st['steps']} steps × {st['prompts_per_step']} tasks × {st['samples_per_prompt']} answers, "
      f"seeds {st['seeds']}, β = {st['beta']}")
sb = torch.tensor(stored["before"])  # (32 held-out tasks, 8 answers), the model before training
c0 = pass_at_k_curve(sb, [1, 8])
print(f"before training: pass@1 {c0[1][0]:.2f} ± {c0[1][1]:.2f}, pass@8 {c0[8][0]:.2f} ± {c0[8][1]:.2f}")
by_method = {}
for r in stored["runs"]:
    by_method.setdefault(r["method"], []).append(r)
change = {}
print(f"{'method':<9}{'Δpass@1':>21}{'Δpass@8':>21}{'Δpass@8 − Δpass@1':>20}{'entropy, first → last 3 steps':>32}")
for m, rs in by_method.items():
    after = [torch.tensor(r["after"]) for r in rs]
    d1, d8 = pass_at_k_change(after, sb, 1), pass_at_k_change(after, sb, 8)
    sharpen = paired_difference(d8["per_prompt"], d1["per_prompt"])  # Δpass@8 − Δpass@1, paired over tasks
    e0, e1 = (mean_se(x) for x in zip(*(first_last(r["log"], "entropy") for r in rs)))
    change[m] = dict(d1=d1, d8=d8, sharpen=sharpen)
    print(f"{m:<9}{d1['mean']:>+9.2f} ± {d1['se_prompts']:.2f} ({d1['se_seeds']:.2f})"
          f"{d8['mean']:>+9.2f} ± {d8['se_prompts']:.2f} ({d8['se_seeds']:.2f}){sharpen.mean:>+13.2f} ± {sharpen.se:.2f}"
          f"{e0[0]:>14.2f} ± {e0[1]:.2f} → {e1[0]:.2f} ± {e1[1]:.2f} nats")
pairs = all_pairs({m: change[m]["d1"]["per_prompt"] for m in by_method})  # pass@1 after, paired over the 32 tasks
for p in pairs:
    print(f"pass@1 after training, {p.a} − {p.b}: {p.mean:+.2f} ± {p.se:.2f} -> {p.verdict}")
assert all(c["d1"]["mean"] > 3 * c["d1"]["se_prompts"] and c["d1"]["mean"] > 3 * c["d1"]["se_seeds"]
           for c in change.values())  # pass@1 rises in every method, resolved both ways
assert not any(c["sharpen"].resolved for c in change.values())  # "sharpening": not resolved beyond 2 SE
assert {p.verdict for p in pairs} == {"within noise", "grpo > dapo", "dr_grpo > dapo", "dapo < rloo"}
assert all(first_last(r["log"], "entropy")[1] < first_last(r["log"], "entropy")[0] for r in stored["runs"])

# %% [markdown]
# The lengths of right and wrong answers over the same runs (first three steps → last three, ± SE over the 3
# seeds), and the samples each method wasted on zero-variance groups:

# %%
# NBVAL_CHECK_OUTPUT
lengths = {}
print(f"{'method':<9}{'wrong answers, tokens':>26}{'right answers, tokens':>26}{'zero-variance groups':>23}{'skipped':>9}")
for m, rs in by_method.items():
    lw, lr = ([first_last(r["log"], key) for r in rs] for key in ("length_wrong", "length_right"))
    zero = mean_se([sum(x["zero_variance_groups"] for x in r["log"]) / len(r["log"]) for r in rs])
    lengths[m] = dict(wrong=lw, right=lr)
    fmt = lambda fl: "{:.1f} → {:.1f} ± {:.1f}".format(mean_se([a for a, _ in fl])[0], *mean_se([b for _, b in fl]))  # noqa: E731
    print(f"{m:<9}{fmt(lw):>26}{fmt(lr):>26}{zero[0]:>16.2f} ± {zero[1]:.2f}{sum(1 for r in rs for x in r['log'] if x['skipped']):>9}")
gap = paired_difference([b for _, b in lengths["grpo"]["wrong"]], [b for _, b in lengths["dr_grpo"]["wrong"]],
                        ("GRPO", "Dr. GRPO"))
print(f"wrong answers in the last 3 steps, GRPO − Dr. GRPO: {gap.mean:+.1f} ± {gap.se:.1f} tokens (paired by seed) -> "
      f"{gap.verdict}")
near_limit = st["max_new_tokens"] - 0.5  # GRPO, every seed: right and wrong answers no shorter, and at the limit
assert all(b >= a and b > near_limit for a, b in lengths["grpo"]["wrong"] + lengths["grpo"]["right"])
assert not gap.resolved  # its length bias against Dr. GRPO: not resolved at this budget

# %% [markdown]
# **β and temperature.** The same GRPO run (3 seeds, 40 steps) twice more, one setting changed each time:
# a KL leash $\beta=0.05$ to the frozen reference, and sampling at $\tau=0.7$ (its pass@k before and after is of
# the tempered policy, evaluated at $\tau=0.7$, and so is its entropy: compare the *relative* fall).

# %%
# NBVAL_CHECK_OUTPUT
variants = {"β=0": stored, "β=0.05": load_stored("verifiable_40steps_beta0.05_cpu_amd-epyc-zen4.json"),
            "τ=0.7": load_stored("verifiable_40steps_temp0.7_cpu_amd-epyc-zen4.json")}
lever = {}
for name, v in variants.items():
    rs = sorted((r for r in v["runs"] if r["method"] == "grpo"), key=lambda r: r["seed"])
    vb = torch.tensor(v["before"])
    after = [torch.tensor(r["after"]) for r in rs]
    lever[name] = dict(fall=[1 - last / first for first, last in (first_last(r["log"], "entropy") for r in rs)],
                       kl=[first_last(r["log"], "kl")[1] for r in rs], p0=pass_at_k_curve(vb, [1, 8]),
                       d1=pass_at_k_change(after, vb, 1), d8=pass_at_k_change(after, vb, 8))
    L = lever[name]
    print(f"GRPO {name:<7} pass@1 {L['p0'][1][0]:.2f} {L['d1']['mean']:+.2f} ± {L['d1']['se_prompts']:.2f}, "
          f"pass@8 {L['p0'][8][0]:.2f} {L['d8']['mean']:+.2f} ± {L['d8']['se_prompts']:.2f} | entropy falls by "
          f"{mean_se(L['fall'])[0]:.0%} ± {mean_se(L['fall'])[1]:.0%} | KL to π_ref at the end "
          f"{mean_se(L['kl'])[0]:.1f} ± {mean_se(L['kl'])[1]:.1f} nats per answer")
verdicts = {}
for name in ("β=0.05", "τ=0.7"):
    for key, what in (("fall", "entropy fall"), ("kl", "final KL")):
        p = paired_difference(lever[name][key], lever["β=0"][key], (name, "β=0"))
        verdicts[(name, key)] = p.verdict
        print(f"{what}, {name} − β=0: {p.mean:+.2f} ± {p.se:.2f} (paired by seed) -> {p.verdict}; per seed "
              + ", ".join(f"{x:.2f} vs {y:.2f}" for x, y in zip(lever[name][key], lever["β=0"][key])))
kl_d1, kl_d8 = (paired_difference(lever["β=0.05"][d]["per_prompt"], lever["β=0"][d]["per_prompt"], ("β=0.05", "β=0"))
                for d in ("d1", "d8"))
print(f"β=0.05 − β=0 over the 32 tasks: Δpass@1 {kl_d1.mean:+.2f} ± {kl_d1.se:.2f} ({kl_d1.verdict}), "
      f"Δpass@8 {kl_d8.mean:+.2f} ± {kl_d8.se:.2f} ({kl_d8.verdict})")
assert verdicts == {("β=0.05", "fall"): "β=0.05 < β=0", ("β=0.05", "kl"): "β=0.05 < β=0",
                    ("τ=0.7", "fall"): "within noise", ("τ=0.7", "kl"): "within noise"}
assert all(x < y for x, y in zip(lever["β=0.05"]["fall"], lever["β=0"]["fall"]))  # smaller fall in every seed
assert kl_d1.mean < 0 and kl_d1.resolved and not kl_d8.resolved  # the leash costs pass@1, not pass@8
assert abs(lever["τ=0.7"]["d8"]["mean"]) < 2 * lever["τ=0.7"]["d8"]["se_prompts"]  # τ=0.7: pass@8 does not move

# %%
def band(ax, rs, key, color, label):  # mean over seeds ± 1 SE, per step
    steps = [x["step"] for x in rs[0]["log"]]
    m, se = mean_se_along(torch.tensor([[x[key] for x in r["log"]] for r in rs], dtype=torch.float64), 0)  # (steps,)
    ax.plot(steps, m, color=color, label=label)
    ax.fill_between(steps, m - se, m + se, color=color, alpha=0.2)


keys = (("proxy_reward", "pass rate of the step's answers"), ("entropy", "entropy, nats per token"),
        ("length_wrong", "length of wrong answers, tokens"), ("zero_variance_groups", "zero-variance groups, fraction"))
colors = {"grpo": "tab:blue", "dr_grpo": "tab:orange", "dapo": "tab:green", "rloo": "tab:red"}
fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
for ax, (key, label) in zip(axes, keys):
    for m, rs in by_method.items():
        band(ax, rs, key, colors[m], f"{m} stored (mean of 3 seeds ± 1 SE)")
    for r in runs:
        ax.plot([x["step"] for x in r["log"]], [math.nan if x[key] is None else x[key] for x in r["log"]], "o--",
                color=colors[r["method"]], ms=3, label=f"{r['method']} CI run")
    ax.set_xlabel("step")
    ax.set_ylabel(label)
axes[0].legend(fontsize=6)
plt.tight_layout()
plt.show()
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
for (name, v), color in zip(variants.items(), ("tab:blue", "tab:purple", "tab:brown")):
    rs = [r for r in v["runs"] if r["method"] == "grpo"]
    band(axes[0], rs, "entropy", color, f"GRPO {name}")
    band(axes[1], rs, "kl", color, f"GRPO {name}")
axes[0].set_ylabel("entropy, nats per token")
axes[1].set_ylabel("KL(π_θ ‖ π_ref), nats per answer")
for ax in axes:
    ax.set_xlabel("step")
axes[0].legend(fontsize=7, title="mean of 3 seeds ± 1 SE", title_fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# **What the stored run shows** (40 steps, 3 seeds, 32 held-out tasks × 8 answers, the same 2-core CPU settings
# as the CI run; the tables above):
# - **RL raises pass@1 in every method, resolved** (asserted: beyond 3 SE over tasks and over seeds): from 0.12 to
#   0.32–0.41 (+0.20 to +0.29), with seeds agreeing closely. pass@8 rises too, by less (+0.12 to +0.23, each
#   about 1.5–3 SE). Pass@8 gaining less than pass@1 is the direction of the "sharpening" reading, but the
#   difference Δpass@8 − Δpass@1 is within 2 SE in every method (asserted): **sharpening is not resolved at
#   this budget**. Nor did RL narrow what the model can answer here: pass@8's change is positive in every method.
# - **The methods, paired over the same tasks:** GRPO, Dr. GRPO and RLOO end within noise of each other; DAPO
#   ends lower than each of the three by 0.07–0.09 (2.3–3.1 SE; asserted). We did not isolate why. It skipped
#   5 of its 120 steps for lack of a group with any variance, and its token mean weighs answers by length; with
#   3 seeds this is a finding about these settings, not about DAPO at scale (where it resamples to refill the
#   batch, which this trainer's filter does not).
# - **Entropy falls in every run** (asserted), by a third to a half in 40 steps. A KL leash slows it: with
#   $\beta=0.05$ it falls by about a quarter instead of nearly a half, smaller in each of the 3 seeds (paired,
#   asserted), and the KL to the reference ends about 4.5× lower — at a price in pass@1 (−0.13 ± 0.03 against
#   $\beta=0$) but none resolved in pass@8. Sampling at $\tau=0.7$ starts from a sharper policy (pass@1 0.23,
#   pass@8 0.62 at that temperature) and its entropy falls by a fraction within noise of $\tau=1$'s; its
#   pass@8 does not move (asserted), so training at $\tau=0.7$ bought pass@1 only.
# - **Length:** GRPO's answers end at the 12-token limit in every seed — its wrong answers (as Liu et al.'s
#   length bias predicts) but its right ones too (asserted), so this is not the bias itself: with answers this short
#   most end at the limit, and GRPO against Dr. GRPO on wrong-answer length is within noise (asserted). The
#   bias needs long answers to show (Liu et al. measured it on reasoning traces over thousands of steps).
# - **Half the samples teach nothing:** about 0.5 of the groups per step have zero variance in every method,
#   the samples DAPO's filter drops and GRPO/RLOO spend compute on for a zero gradient.

# %%
print(f"lesson run time: {time.perf_counter() - start:.0f} s")

# %% [markdown]
# ## Exercises
#
# Write the few lines the library implements, then run the check below it: it compares your function with
# the library's on several inputs and says what was expected, for which input, and what to revisit.

# %% nbgrader={"grade": false, "grade_id": "setup_08", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import torch

from reinforce_edu.teaching import exercises


# %% [markdown] nbgrader={"grade": false, "grade_id": "pass_at_k_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Exercise 18 — the unbiased pass@k
# From `n` sampled answers of which `c` are right, return the chance that a random set of `k` of them
# (drawn **without** replacement) holds at least one right answer: $1-\binom{n-c}{k}/\binom{n}{k}$, a float.

# %% nbgrader={"grade": false, "grade_id": "pass_at_k", "locked": false, "schema_version": 3, "solution": true, "task": false}
def pass_at_k(n, c, k):
    ### BEGIN SOLUTION
    if n - c < k:  # every k-subset holds a right answer
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "pass_at_k_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
exercises.check_pass_at_k(pass_at_k)
### BEGIN HIDDEN TESTS
exercises.check_pass_at_k(pass_at_k, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "zero_variance_filter_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Exercise 19 — DAPO's filter
# `rewards` has shape `(P, k)`. Return a `(P,)` bool tensor, True for the groups to **keep**: those whose `k`
# rewards are not all equal (all-pass and all-fail groups have zero advantage and are dropped).

# %% nbgrader={"grade": false, "grade_id": "zero_variance_filter", "locked": false, "schema_version": 3, "solution": true, "task": false}
def zero_variance_filter(rewards):
    ### BEGIN SOLUTION
    return rewards.max(dim=1).values > rewards.min(dim=1).values  # (P,)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "zero_variance_filter_check", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
exercises.check_zero_variance_filter(zero_variance_filter)
### BEGIN HIDDEN TESTS
exercises.check_zero_variance_filter(zero_variance_filter, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "dr_grpo_advantages_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Exercise 20 — Dr. GRPO's advantages
# `rewards` has shape `(P, k)`. Return Dr. GRPO's advantages, shape `(P, k)`: the reward minus the mean of
# its group, **not** divided by the group's standard deviation (GRPO's division reweights prompts).

# %% nbgrader={"grade": false, "grade_id": "dr_grpo_advantages", "locked": false, "schema_version": 3, "solution": true, "task": false}
def dr_grpo_advantages(rewards):
    ### BEGIN SOLUTION
    return rewards - rewards.mean(dim=1, keepdim=True)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "dr_grpo_advantages_check", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
exercises.check_dr_grpo_advantages(dr_grpo_advantages)
### BEGIN HIDDEN TESTS
exercises.check_dr_grpo_advantages(dr_grpo_advantages, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## Summary

# %%
print(f"| measured ({'CUDA' if CUDA else 'CPU'} settings, {S['steps']} steps) | value |")
print("|---|---|")
print(f"| start pass@1 / pass@8 on held-out tasks | {curve0[1][0]:.2f} ± {curve0[1][1]:.2f} / {curve0[8][0]:.2f} |")
for r in runs:
    (d1, s1), (d8, s8) = deltas[(r["method"], r["seed"])]
    print(f"| {r['method']} seed {r['seed']}: Δpass@1, Δpass@8 | {d1:+.2f} ± {s1:.2f}, {d8:+.2f} ± {s8:.2f} |")
print(f"| zero-variance groups (k = 2, 4, 8, before training) | {zv[2].mean():.2f}, {zv[4].mean():.2f}, {zv[8].mean():.2f} |")
print(f"| samples without gradient per step (CI runs) | {wasted:.0%} |")

# %% [markdown]
# **What to try next**
# - Resolve the sharpening question: `python scripts/verifiable_run.py --methods grpo rloo --seeds 0 1 2 --steps 40
#   --eval-prompts 32 --out my_run.json`, then `--add-to my_run.json --seeds 3 4 5 6 7` (more seeds, the same
#   settings checked) and `--eval-prompts 80` (more tasks: the SE over tasks is the wider one above).
# - Longer answers (`--max-new-tokens 64`), where GRPO's length bias has room to show against Dr. GRPO's.
# - Why DAPO ended lower here: the same run with the filter off (`group_filter="none"` in its TrainConfig) isolates
#   the filter from the token mean.
# - A format term: `verifiable_reward(format_weight=0.5)` as the trainer's `reward_fn` — rewards are no longer
#   0/1, and fewer groups are unanimous.
# - The same reward functions in TRL: `GRPOTrainer(model, reward_funcs=[correctness_reward], train_dataset=...)`
#   with a dataset of `{"prompt", "answer"}` rows from `data/tasks_train.jsonl`.
