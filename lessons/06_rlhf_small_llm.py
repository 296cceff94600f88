# %% [markdown]
# # 06 · RLHF on a real small LLM: REINFORCE / RLOO on SmolLM2-135M
#
# **What you will learn**
# - how the loss, baselines and KL of lessons 01–04 fine-tune a real language model —
#   SmolLM2-135M-Instruct, offline — against the reward model of lesson 05, with one command;
# - why sampling uses **temperature 1 and no top-k/top-p**: the estimator needs the log-probs of the
#   distribution the samples came from;
# - how to read a run: proxy reward, **gold** reward, KL to the reference, entropy, length, gradient norm;
# - whether the **held-out gold reward** really rises (measured, with its standard error), and what the
#   proxy does that the gold reward does not (**over-optimisation**);
# - whether gradient clipping is "essential", as the seed text says, with AdamW;
# - **the variance of the policy gradient on the real LLM** for no baseline, a running mean, RLOO and a
#   learned value (last-block features + a ridge head), from per-sample gradients of the last transformer block.
#
# On a 2-core CPU the whole lesson takes 2 to 5 minutes at small settings (the faster where the CPU
# computes in bf16, lesson 00); with CUDA the settings cell
# switches to full-size runs.
#
# **Run it on a GPU.** In a hosted notebook with a GPU, the README's section *Run it on a GPU* has the three
# set-up commands (they keep the notebook's own CUDA torch); then run this lesson as it is: the settings cell
# below picks the full-size runs by itself. The same section has the commands for several GPUs.

# %% [markdown]
# ## 0. Settings
#
# **To copy the method, start with `reinforce_edu/llm/minimal.py`**: the whole RLOO loop below in one file,
# read top to bottom, without the speed tricks — `tests/test_minimal.py` checks that one step of it gives
# the trainer's loss and gradients on the same samples. This lesson uses the full trainer
# (`reinforce_edu/llm/trainer.py`: checkpoints, resume, PPO, the precision choice, the speed). Its training
# step, for $P$ prompts and $k$ samples each:
#
# | | what | code |
# |---|---|---|
# | 1 | $y_{ij}\sim\pi_\theta(\cdot\mid x_i)$, KV-cached, in the fast precision | `sampling.sample` |
# | 2 | $r_{ij}=r_\phi(x_i,y_{ij})$, the reward model of lesson 05 (checked: no NaN, right count) | `rewards.compute_rewards` |
# | 3 | $\log\pi_\theta(y_{ij,t}\mid\cdot)$ and $\log\pi_{\rm ref}(y_{ij,t}\mid\cdot)$ in fp32 | `logprobs.completion_logprobs` |
# | 4 | $R_{ij}=r_{ij}-\beta\,\widehat{\rm KL}_{ij}$, $A_{ij}=R_{ij}-b_{ij}$, surrogate loss | `losses.reinforce_loss` (lessons 01–04) |
# | 5 | clip $\lVert g\rVert\le c$, AdamW step, `baseline.update(R)` | `trainer.Trainer.train_step` |
#
# On the CPU we train only the **last 2 of the 30 transformer blocks** (and the final norm):
# `--trainable-blocks 2`. The other 28 blocks are frozen and stored in the compute precision, and the backward pass stops
# at block 28, so a step costs little more than three forward passes. The output layer does not
# train: SmolLM2 ties it to the input embedding, and training it would send the backward pass through
# every block. This is a smaller policy class than full fine-tuning — the reward it can reach in a
# few steps is what matters here. With CUDA the lesson fine-tunes every parameter.

# %%
import math
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: on a shared CPU, idle threads sleep

import matplotlib.pyplot as plt
import torch

from reinforce_edu.core.baselines import LeaveOneOutBaseline, NoBaseline, RunningMeanBaseline
from reinforce_edu.llm.data import load_prompts
from reinforce_edu.llm.logprobs import completion_logprobs
from reinforce_edu.llm.sampling import encode_prompts, position_ids, sample
from reinforce_edu.llm.variance import gradient_variance, score_gradients
from reinforce_edu.llm.value_baseline import fit_value_head, loo_residuals, prompt_features
from reinforce_edu.llm.models import load_model
from reinforce_edu.llm.reward_model import load_reward_model
from reinforce_edu.llm.rewards import compute_rewards
from reinforce_edu.llm.cli import main
from reinforce_edu.perf.precision import choose_precision
from reinforce_edu.llm.checkpoint import read_log
from reinforce_edu.teaching.plotting import plot_log

start = time.perf_counter()
torch.set_num_threads(min(2, os.cpu_count() or 1))  # the same numbers on every run
CUDA = torch.cuda.is_available()
if CUDA:  # full size: every parameter trains, longer runs, bigger batches and evaluations
    S = dict(steps=150, side_steps=150, prompts_per_step=16, samples_per_prompt=4, max_new_tokens=48,
             trainable_blocks=0, learning_rate=1e-5, hard_learning_rate=3e-5, eval_prompts=80, eval_k=4,
             var_prompts=32)
else:     # 2 CPU cores: ~2 minutes where the CPU computes in bf16, ~4 without native bf16 (lesson 00)
    S = dict(steps=10, side_steps=6, prompts_per_step=4, samples_per_prompt=4, max_new_tokens=16,
             trainable_blocks=2, learning_rate=3e-4, hard_learning_rate=1e-3, eval_prompts=32, eval_k=2,
             var_prompts=12)
RUNS = Path("runs")  # notebooks/runs/ (not committed)
COMMON = ["--prompts-per-step", S["prompts_per_step"], "--samples-per-prompt", S["samples_per_prompt"],
          "--max-new-tokens", S["max_new_tokens"], "--trainable-blocks", S["trainable_blocks"],
          "--baseline", "rloo", "--kl-estimator", "k1", "--aggregation", "sum", "--seed", 0]
COMMON = [str(a) for a in COMMON]
print("CUDA" if CUDA else "CPU", S)

# %% [markdown]
# ## 1. Sampling exactly from $\pi_\theta$
#
# REINFORCE estimates $\nabla J=\mathbb E_{y\sim\pi_\theta}[(R-b)\nabla\log\pi_\theta(y)]$. The expectation
# is over $\pi_\theta$ itself, so the samples must come from $\pi_\theta$ and the log-probs must be those of
# that same distribution. Top-k or top-p sampling draws from a *truncated* distribution, a temperature
# $\tau\neq1$ from ${\rm softmax}(z/\tau)$: the gradient of $\log\pi_\theta$ would then belong to a different
# distribution than the one that produced $y$, and the estimate is biased. transformers' `generate`
# applies `top_k=50` **by default**; `sampling.sample` turns every logits processor off.
#
# How much does top-50 cut? The probability mass outside the 50 most likely tokens, at the first token of
# the answer, for a few prompts:

# %%
# NBVAL_CHECK_OUTPUT
model, tok = load_model()  # SmolLM2-135M-Instruct, dequantised once, cached
heldout = load_prompts("heldout")
ids, mask = encode_prompts(tok, heldout[:8])
with torch.no_grad():
    probs = torch.softmax(model(input_ids=ids, attention_mask=mask).logits[:, -1].float(), -1)  # (8, V)
outside = 1 - probs.topk(50, dim=-1).values.sum(-1)  # (8,)
print(f"mass outside the top 50 tokens at the first answer token: mean {outside.mean():.3f}, "
      f"max {outside.max():.3f}")
assert outside.mean() > 0.01

# %% [markdown]
# The log-probs are computed in one forward pass over prompt + completion. Only the $T$ completion
# positions go through the output layer ($H\to V$, $V=49\,152$), the logits are upcast to fp32, and
#
# $$\log\pi_\theta(y_t\mid\cdot)=z_t[y_t]-\operatorname{logsumexp}_v z_t[v],$$
#
# so no $(B,T,V)$ log-softmax copy is made. Oracle: the same numbers from a full `log_softmax` over every
# position.

# %%
# NBVAL_CHECK_OUTPUT
r = sample(model, tok, heldout[:2], k=2, max_new_tokens=8, seed=0)
with torch.no_grad():
    lp = completion_logprobs(model, r.input_ids, r.attention_mask, r.prompt_length)  # (4, 8)
    full = torch.log_softmax(model(input_ids=r.input_ids, attention_mask=r.attention_mask,
                                   position_ids=position_ids(r.attention_mask)).logits.float(), -1)
want = full[:, r.prompt_length - 1:-1].gather(-1, r.completion_ids[..., None]).squeeze(-1)
err = ((lp - want) * r.completion_mask).abs().max().item()
print(f"completion log-probs agree with the full log-softmax within 1e-4: {err < 1e-4}")
assert err < 1e-4
for p, c in zip(r.repeated_prompts, r.completions):
    print(f"{p!r} -> {c!r}")

# %% [markdown]
# ## 2. One run: RLOO against the reward model
#
# The notebook calls the command-line entry point, exactly as a terminal would:
# `python -m reinforce_edu.train --beta 0.05 --learning-rate ... --output-dir runs/06_main`. It returns the
# `Trainer`, which keeps the policy and its frozen reference $\pi_{\rm ref}$ (the model as it started).

# %%
run = main(COMMON + ["--beta", "0.05", "--learning-rate", str(S["learning_rate"]), "--steps", str(S["steps"]),
                     "--output-dir", str(RUNS / "06_main")])

# %% [markdown]
# **Did the gold reward rise?** The proxy reward is what the policy optimises; it can be fooled. The gold
# scorer (lesson 05) never reaches the loss. We sample answers to **held-out** prompts — topics never
# seen in training — from $\pi_{\rm ref}$ (before) and from the trained policy (after), with the same seed,
# and compare mean gold rewards. Each mean has standard error ${\rm SE}=s/\sqrt n$; the difference of two
# independent means has ${\rm SE}=\sqrt{{\rm SE}_1^2+{\rm SE}_2^2}$. Ours are not quite independent —
# the same prompts serve both — and answers to the same prompt tend to score alike, which makes this SE
# of the difference too large rather than too small: the test is conservative.

# %%
# NBVAL_CHECK_OUTPUT
held = heldout[:S["eval_prompts"]]
before = run.evaluate(held, k=S["eval_k"], seed=1, model="reference")
after = run.evaluate(held, k=S["eval_k"], seed=1)
rise = after["gold"] - before["gold"]
se = math.hypot(before["gold_se"], after["gold_se"])
n = len(before["gold_values"])
print(f"held-out answers: {n}")
print(f"gold  before {before['gold']:.2f} ± {before['gold_se']:.2f}   after {after['gold']:.2f} ± {after['gold_se']:.2f}")
print(f"proxy before {before['proxy']:.2f} ± {before['proxy_se']:.2f}   after {after['proxy']:.2f} ± {after['proxy_se']:.2f}")
print(f"gold rise {rise:.2f} = {rise / se:.1f} standard errors")
assert rise > 2 * se

# %%
for i in range(0, 8, 2):
    print(f"PROMPT  {held[i // S['eval_k']]}")
    print(f"  before  {before['completions'][i]!r}  (gold {before['gold_values'][i]:+.2f})")
    print(f"  after   {after['completions'][i]!r}  (gold {after['gold_values'][i]:+.2f})")

# %% [markdown]
# **Reading the log.** Every step writes one JSON line to `runs/06_main/metrics.jsonl`:
#
# | metric | meaning |
# |---|---|
# | `proxy_reward` | mean reward-model score of the step's $P\cdot k$ samples — what is optimised |
# | `gold_reward` | mean gold score of the same samples — logged, never optimised |
# | `kl` | mean over samples of $\sum_t(\log\pi_\theta-\log\pi_{\rm ref})$ (the `k1` estimator): how far the policy moved |
# | `entropy` | mean per-token entropy of $\pi_\theta$ at the sampled positions, in nats |
# | `length` | mean completion length in tokens (EOS included) |
# | `grad_norm` | $\lVert g\rVert$ before clipping; `clipped` says whether clipping acted |
# | `skipped` | why an update was skipped (non-finite log-probs, loss or gradient), else null |

# %%
log = read_log(RUNS / "06_main")
plot_log(log)
plt.tight_layout()
plt.show()
lengths = [r["length"] for r in log]
at_limit = sum(x >= S["max_new_tokens"] - 0.5 for x in lengths)
print(f"mean answer length per step: {', '.join(f'{x:.1f}' for x in lengths)} (limit {S['max_new_tokens']} tokens); "
      f"{at_limit} of {len(lengths)} steps within half a token of the limit")
if not CUDA:  # at the CPU settings nearly every answer is cut by the limit, from the first step on
    assert min(lengths) > 0.9 * S["max_new_tokens"]

# %% [markdown]
# **Read the length panel with care.** At the CPU settings the limit of 16 new tokens cuts nearly every answer
# from the first step on (the line above): SmolLM2 starts longer answers than that, so the reward model scores
# truncated text, and the length panel sits at the limit — at this budget it cannot show the length drifting,
# whatever the loss's aggregation does to it. The GPU settings (48 tokens) leave room; lesson 03 measures the
# length bias where every length is possible.

# %% [markdown]
# ## 3. Over-optimisation: pushing the proxy harder
#
# The reward model is a proxy: a linear probe on frozen features, trained on a thousand pairs. Optimise it
# hard enough and the policy finds what the probe likes rather than what the gold scorer likes (Gao et al.,
# 2022). The KL penalty $\beta$ is the leash. A second run drops it ($\beta=0$) and triples the
# learning rate, so the policy moves much further from $\pi_{\rm ref}$ in fewer steps.

# %%
hard = main(COMMON + ["--beta", "0", "--learning-rate", str(S["hard_learning_rate"]), "--steps", str(S["side_steps"]),
                      "--output-dir", str(RUNS / "06_beta0")])
hard_after = hard.evaluate(held, k=S["eval_k"], seed=1)


# %%
# NBVAL_CHECK_OUTPUT
def corr(a, b):
    a, b = torch.tensor(a), torch.tensor(b)
    return torch.corrcoef(torch.stack([a, b]))[0, 1].item()

def last_kl(records, n=3):
    return sum(r["kl"] for r in records[-n:]) / n

rows = [("reference (before)", 0.0, before), (f"beta=0.05, {S['steps']} steps", last_kl(log), after),
        (f"beta=0, {S['side_steps']} steps, lr x{S['hard_learning_rate'] / S['learning_rate']:.0f}",
         last_kl(read_log(RUNS / "06_beta0")), hard_after)]
print(f"{'policy':<28}{'KL':>7}{'proxy':>8}{'gold':>7}{'corr(proxy, gold)':>19}")
for name, kl, ev in rows:
    print(f"{name:<28}{kl:>7.1f}{ev['proxy']:>8.2f}{ev['gold']:>7.2f}"
          f"{corr(ev['proxy_values'], ev['gold_values']):>19.2f}")
gain = lambda ev, key: ev[key] - before[key]
print(f"gold gained per unit of proxy gained: beta=0.05 {gain(after, 'gold') / gain(after, 'proxy'):.2f}, "
      f"beta=0 {gain(hard_after, 'gold') / gain(hard_after, 'proxy'):.2f}")
kl_ratio = last_kl(read_log(RUNS / "06_beta0")) / last_kl(log)
print(f"without the leash the policy ends {kl_ratio:.1f}x as far from the reference (KL)")
assert kl_ratio > 1.2  # without the leash the policy goes further, in fewer steps

# %%
for i in range(0, 8, 2):
    print(f"{held[i // S['eval_k']]!r}\n    beta=0: {hard_after['completions'][i]!r}")

# %% [markdown]
# What the short CPU run shows, honestly: without the leash the policy ends further from $\pi_{\rm ref}$
# (the KL column, asserted; the last line prints how many times further — about 2× to 3× in the CPU runs
# measured so far, on different CPUs) and its answers converge on a few stock openings. Whether the proxy
# and the gold reward also climb faster without it is **not resolved at this budget**: 6 steps against
# 10, at another learning rate, from one seed — on one CPU the β = 0 run gained more of both, on another
# less. What each run does show is the gold gained per unit of proxy gained (the gain line) and that
# only part of the proxy gain is gold gain. The classic picture — gold reward *falling* while the proxy still climbs — needs
# longer optimisation than a few CPU steps: with CUDA the settings cell runs 150 steps; compare the
# `proxy_reward` and `gold_reward` curves of `runs/06_beta0/metrics.jsonl`. A second warning sign to
# watch in longer runs is the last column: once the policy's answers all sit where the proxy is high, the
# proxy's ranking of them says less and less about the gold ranking, and their correlation drops.

# %% [markdown]
# **One change at a time (a stored run).** The comparison above changes two things at once — $\beta$ and the
# learning rate — and runs one seed. `scripts/kl_ablation.py` changes only $\beta$: RLOO $k=4$, $\beta=0.05$
# against $\beta=0$ at the *same* learning rate ($10^{-3}$, the fast one above), the same 16 steps of $B=8$,
# the same prompts, 3 seeds, each policy scored on 32 held-out prompts. It took 32 minutes on the course's
# 2-core AMD EPYC Zen 3 (one torch thread, shared with other work), too long for this notebook, so it is read
# from `data/results/kl_ablation_cpu_amd-epyc-zen3.json`. Differences are paired by seed (same prompts, same
# first batch):

# %%
# NBVAL_CHECK_OUTPUT
import json

from reinforce_edu.core.significance import mean_se, mean_se_along, paired_difference

ablation = json.loads(Path("../data/results/kl_ablation_cpu_amd-epyc-zen3.json").read_text())
A = ablation["settings"]
print(f"stored run: {ablation['device']}; commit {ablation['commit'][:10]}; {A['method']}, lr {A['learning_rate']:g}, "
      f"{A['steps']} steps of B={A['samples_per_step']}, seeds {A['seeds']}")
by_beta = {b: sorted((r for r in ablation["runs"] if r["beta"] == b), key=lambda r: r["seed"]) for b in A["betas"]}
final_kl = lambda r: sum(c["kl"] for c in r["curve"][-3:]) / 3  # mean of the last 3 steps
per_seed = {b: {"held-out gold": [r["eval"]["gold"] for r in rs], "held-out proxy": [r["eval"]["proxy"] for r in rs],
                "KL, last 3 steps": [final_kl(r) for r in rs]} for b, rs in by_beta.items()}
print(f"{'mean ± SE over seeds':<22}" + "".join(f"{'beta=' + format(b, 'g'):>16}" for b in A["betas"])
      + f"{'beta=0 − 0.05 (paired)':>26}")
diffs = {}
for key in per_seed[0.05]:
    d = paired_difference(per_seed[0.0][key], per_seed[0.05][key], ("beta=0", "beta=0.05"))
    diffs[key] = d
    cells = "".join(f"{'%.2f ± %.2f' % mean_se(per_seed[b][key]):>16}" for b in A["betas"])
    print(f"{key:<22}{cells}{d.mean:>15.2f} ± {d.se:.2f} ({abs(d.mean) / d.se:.1f} SE)")
# does gold fall while the proxy still climbs? per run: gold of the last 4 steps against its best 4-step stretch
drop = lambda r: max(sum(c["gold"] for c in r["curve"][i:i + 4]) / 4 for i in range(len(r["curve"]) - 3)) \
    - sum(c["gold"] for c in r["curve"][-4:]) / 4
print("gold below its best 4-step stretch at the end, per run:",
      {f"beta={b:g}": [round(drop(r), 2) for r in rs] for b, rs in by_beta.items()})
gold_d = diffs["held-out gold"]
assert 2 * gold_d.se < gold_d.mean < 4.3 * gold_d.se  # beta=0 ahead in gold: > 2 SE, short of a 3-seed t-test (4.3)
assert all(abs(diffs[k].mean) < 2 * diffs[k].se for k in ("held-out proxy", "KL, last 3 steps"))  # not resolved
assert all(drop(r) < 0.1 for rs in by_beta.values() for r in rs)  # nowhere does gold fall while the proxy rises

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.3))
for ax, key, label in zip(axes, ("proxy", "gold", "kl"),
                          ("proxy reward (reward model)", "gold reward (VADER)", "KL to π_ref (nats)")):
    for b, rs in by_beta.items():
        curves = torch.tensor([[c[key] for c in r["curve"]] for r in rs])  # (seeds, steps)
        avg, band = mean_se_along(curves, 0)  # (steps,) each: over seeds
        steps = range(1, curves.shape[1] + 1)
        ax.plot(steps, avg, label=f"beta = {b:g}")
        ax.fill_between(steps, avg - band, avg + band, alpha=0.25)
    ax.set(xlabel="training step", ylabel=label, title=f"{label}: mean of {len(rs)} seeds, band ± 1 SE")
    ax.title.set_fontsize(9)
axes[0].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# What the stored run finds, honestly: with only $\beta$ changed, the run **without** the leash ends with
# *higher* held-out gold — by about 0.05, 2.4 SE paired over 3 seeds; more than the 2 SE we use as a rule of
# thumb, less than the 4.3 SE a $t$-test on 3 seeds asks for — the opposite of what the seed predicts. The
# proxy and the KL differences are not resolved: at this learning rate the penalty ($\beta\cdot{\rm KL}\approx 1$
# against a proxy gain of 3–5) is a weak leash, and both policies drift 20–40 nats from $\pi_{\rm ref}$. And
# **gold never falls while the proxy climbs**: along this path the reward model and VADER still agree (the
# sentiment the probe learned is largely VADER's), so the classic over-optimisation curve is *not reproduced*
# here. The seed's claim "a frozen reference and KL prevent reward hacking" is supported on the toy (lesson 04,
# where the hack is built in and the optimum is exact); on the LLM it is not supported at this budget. A run
# long enough, or a proxy weaker than this one, is what would decide
# it: `python scripts/kl_ablation.py --steps 200 --samples-per-step 64` on a GPU.

# %% [markdown]
# ## 4. Is gradient clipping essential?
#
# The seed text: *"Gradient clipping (max norm 1.0) is essential to prevent instability."* Clipping rescales
# the whole gradient, $g\leftarrow g\cdot\min(1, c/\lVert g\rVert)$. With AdamW each coordinate is then
# divided by $\sqrt{\hat v}$, the running RMS of its own past gradients — a global rescaling of every
# step by the same factor would cancel exactly. What survives is the *relative* weight of steps in Adam's
# averages: clipping at $c$ turns every step with $\lVert g\rVert>c$ into a step of norm $c$. Same run,
# clipping off:

# %%
noclip = main(COMMON + ["--beta", "0.05", "--learning-rate", str(S["learning_rate"]), "--steps", str(S["side_steps"]),
                        "--max-grad-norm", "0", "--output-dir", str(RUNS / "06_noclip")])
log_noclip = read_log(RUNS / "06_noclip")

# %%
# NBVAL_CHECK_OUTPUT
on, off = log[:S["side_steps"]], log_noclip
half = S["side_steps"] // 2
mean = lambda recs, key: sum(r[key] for r in recs[half:]) / len(recs[half:])
norms = sorted(r["grad_norm"] for r in log)
frac = sum(r["clipped"] for r in log) / len(log)
print(f"pre-clip gradient norm (clip at 1.0): median {norms[len(norms) // 2]:.0f}, "
      f"fraction of steps clipped {frac:.2f}")
print(f"steps {half + 1}-{S['side_steps']}   {'proxy':>7}{'gold':>7}{'KL':>7}")
for name, recs in (("clip 1.0", on), ("no clip", off)):
    print(f"{name:<14}{mean(recs, 'proxy_reward'):>7.2f}{mean(recs, 'gold_reward'):>7.2f}{mean(recs, 'kl'):>7.2f}")
print("skipped (non-finite) steps:", sum(r["n_skipped"] for r in (log[-1], off[-1])))
assert frac >= 0.9 and norms[len(norms) // 2] > 10  # clipping acts on (nearly) every step; norms are tens
assert all(r["skipped"] is None for r in on + off)

# %%
axes = plot_log(on, keys=("proxy_reward", "gold_reward", "kl"), label="clip 1.0")
plot_log(off, keys=("proxy_reward", "gold_reward", "kl"), axes=axes, label="no clip")
axes[0].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# Clipping acted on (nearly) every step — the raw gradient norm of the summed sequence log-probs is
# tens — and yet the run without clipping stayed stable in these few steps (no skipped update, a proxy
# reward somewhat lower but of the same order; at this size the gold columns are too noisy to rank the two). With
# AdamW, "essential" overstates it: the optimiser's per-coordinate normalisation already bounds each
# step to about the learning rate. Clipping still earns its place as insurance against a *rare* outlier
# batch (one huge gradient would otherwise dominate Adam's moment estimates for many steps) and it is
# essential with plain SGD, where the step *is* the gradient — lesson 04 (section 7) measures both on the toy
# task, with one outlier batch over 5 seeds. A few steps cannot show a rare event; the
# trainer's other safety net can be tested directly: a non-finite loss or gradient skips the update and
# leaves the weights untouched (`tests/test_trainer.py`).

# %% [markdown]
# ## 5. The variance of the policy gradient on the real LLM
#
# Lesson 02 measured baselines on a bandit. Here is the same measurement on SmolLM2. For a batch of $P$
# prompts, $k=4$ answers each, and $\theta$ = the **last transformer block and the final norm**
# (3.5 M parameters), `llm.variance.score_gradients` computes every answer's score gradient
# $s_{ij}=\nabla_\theta\log\pi_\theta(y_{ij}\mid x_i)$ — per sample, with `torch.func.vmap` over the last
# block (`per_sample.per_sample_grads`). Each prompt contributes $G_i=\frac1k\sum_j A_{ij}s_{ij}$ to the
# batch estimate, prompts are independent, so
#
# $$\operatorname{Var}(\hat g)=\frac{\operatorname{tr}\operatorname{Cov}(G_i)}{P}.$$
#
# The same answers and the same $s_{ij}$ serve every baseline. A Bradley–Terry reward model is defined only
# up to a constant (lesson 05), and lesson 05 centred it on the data — which is itself a baseline. So we
# also add offsets $c$ to the reward: the running mean (fed the *held-out* rewards of section 2, i.e. past
# data) and RLOO follow the offset, no baseline does not. After the run above, the policy's own rewards sit
# near $c\approx$ the proxy gain of section 2.
#
# A fourth baseline is **learned**: the value of a prompt, $V(x)=w\cdot\phi(x)+b$, where $\phi(x)$ is the frozen
# model's last hidden state (after the final norm) at the prompt's last token — what the policy reads its first
# answer token from — and $(w,b)$ is a ridge regression, in closed form, on the same past data the running mean
# is fed: the 32 held-out prompts of section 2 and their mean proxy reward (+ $c$). The ridge strength $\lambda$
# is chosen by leave-one-out on that past data, exactly and without refits: ${\rm LOO}(\lambda)=\frac1n\sum_i
# \big(e_i/(1-H_{ii})\big)^2$ with $H$ the ridge's hat matrix; $\lambda=\infty$ (the constant $\bar y$, what the
# running mean holds) is one of the candidates (`llm.value_baseline`). $V$ never sees this batch's answers, so
# $b_{ij}=V(x_i)$ keeps the estimate unbiased; the intercept is not penalised, so $V$ follows an offset exactly.

# %%
# `model` is SmolLM2 as it starts, in fp32 (the trainers hold their own copies); it is also the backbone
# of the reward model here, which freezes it — per_sample_grads differentiates a functional copy anyway.
reward_model = load_reward_model(model, tok).as_reward_fn()
vprompts = load_prompts("train")[:S["var_prompts"]]
device = next(model.parameters()).device
with choose_precision(device).autocast():  # bf16 where this machine multiplies it fast, else fp32 (lesson 00)
    rv = sample(model, tok, vprompts, k=4, max_new_tokens=S["max_new_tokens"], seed=2)
    R = compute_rewards(reward_model, rv.completions, rv.repeated_prompts).view(len(vprompts), 4)
scores = score_gradients(model, rv)  # (P·k, D) in fp32
phi_past, phi_now = prompt_features(model, tok, held), prompt_features(model, tok, vprompts)  # (32, H), (P, H)
print(tuple(scores.shape), tuple(phi_past.shape))

# %%
# NBVAL_CHECK_OUTPUT
offsets = (0.0, 1.0, 3.0)
past = torch.tensor(before["proxy_values"]).view(-1, 1)  # rewards seen before this batch
past_means = past.view(len(held), -1).mean(1)  # (32,): one target per past prompt
table, table_se, heads = {}, {}, {}
for c in offsets:
    running = RunningMeanBaseline()
    running.update(past + c)
    heads[c] = fit_value_head(phi_past, past_means + c)  # V(x) = w·φ(x) + b on past data, λ by leave-one-out
    rows_v = gradient_variance(scores, R + c, {"none": NoBaseline(), "running_mean": running,
                                               "rloo": LeaveOneOutBaseline(), "value": heads[c].baseline(phi_now)})
    table[c] = {r["baseline"]: r["variance"] for r in rows_v}
    table_se[c] = {r["baseline"]: r["variance_se"] for r in rows_v}  # from the spread over the P prompts
ref_var = table[0.0]["none"]
head = heads[0.0]
loo_sq = [loo_residuals(phi_past, past_means, lam).pow(2) for lam in (head.lam, math.inf)]  # (32,) each
loo_gap = mean_se(loo_sq[0] - loo_sq[1])  # paired over the same past prompts
print(f"value head on {len(held)} past prompts: leave-one-out squared error {head.loo_mse[head.lam]:.2f} "
      f"(the constant: {head.loo_mse[math.inf]:.2f}; paired difference {loo_gap[0]:+.2f} ± {loo_gap[1]:.2f})")
v_corr = torch.corrcoef(torch.stack([head.predict(phi_now), R.mean(1)]))[0, 1].item()
print(f"on the {len(vprompts)} batch prompts, corr(V(x_i), mean reward of their 4 answers) = {v_corr:.2f}")
print(f"variance of the gradient estimate, relative to no baseline at c = 0 (± 1 SE over {len(vprompts)} prompts)")
print(f"{'baseline':<14}" + "".join(f"{'c=' + str(c):>13}" for c in offsets))
for name in ("none", "running_mean", "rloo", "value"):
    print(f"{name:<14}" + "".join(f"{table[c][name] / ref_var:>8.2f} ±{table_se[c][name] / ref_var:>4.2f}"
                                  for c in offsets))
c = offsets[-1]  # a drift of 3: both baselines well below none (at c = 1 it depends on the batch)
assert table[c]["rloo"] < table[c]["none"] and table[c]["running_mean"] < table[c]["none"]
assert all(abs(table[c]["rloo"] / table[0.0]["rloo"] - 1) < 1e-6 for c in offsets)  # RLOO ignores offsets
assert table[0.0]["rloo"] < 2 * table[0.0]["none"]  # centred rewards: at most about RLOO's k/(k-1) price
assert table[0.0]["none"] < table[1.0]["none"] < table[3.0]["none"]  # no baseline grows with the offset
assert all(abs(table[c]["running_mean"] / table[0.0]["running_mean"] - 1) < 0.05 for c in offsets)  # it follows
assert all(abs(table[c]["value"] / table[0.0]["value"] - 1) < 1e-4 for c in offsets)  # V's intercept takes c whole
assert head.loo_mse[head.lam] < head.loo_mse[math.inf]  # on past data the features carry signal: a finite λ wins
assert abs(math.atanh(v_corr)) < 2 / math.sqrt(len(vprompts) - 3)  # on the batch: no correlation resolved

# %%
# with the standard errors (over the prompts; unpaired, so conservative): what 12 prompts resolve
gap_se = lambda c, a, b: (table[c][a] - table[c][b]) / math.hypot(table_se[c][a], table_se[c][b])
assert gap_se(3.0, "none", "rloo") > 2 and gap_se(3.0, "none", "running_mean") > 2  # resolved at c = 3
assert abs(gap_se(0.0, "rloo", "none")) < 2  # at c = 0: RLOO's price is not resolved at this budget
assert gap_se(3.0, "none", "value") > 2  # the learned value: resolved below no baseline at c = 3
assert all(abs(gap_se(c, "value", "running_mean")) < 2 for c in offsets)  # value vs a constant: not resolved

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.2))
width = 0.2
labels = {"none": "none", "running_mean": "running mean", "rloo": "RLOO", "value": "value (ridge on last-block φ)"}
for j, name in enumerate(labels):
    ax.bar([i + (j - 1.5) * width for i in range(len(offsets))], [table[c][name] / ref_var for c in offsets],
           width, yerr=[table_se[c][name] / ref_var for c in offsets], capsize=2, label=labels[name])
ax.set_xticks(range(len(offsets)), [f"reward offset c={c:g}" for c in offsets])
ax.set_yscale("log")
ax.set_ylabel("Var(ĝ) / Var(ĝ) of none at c=0 (ratio)")
ax.set_title(f"SmolLM2, last block: gradient variance per baseline (± 1 SE, {len(vprompts)} prompts)", fontsize=9)
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Read the table from left to right. At $c=0$ the rewards are already centred — "no baseline" then behaves
# like a good constant baseline, and RLOO has little left to gain; it even pays a price: its advantage
# $R_{ij}-\frac1{k-1}\sum_{l\ne j}R_{il}$ has variance $\frac{k}{k-1}\sigma^2$ where the centred reward has
# $\sigma^2+\mu_x^2$ ($\sigma^2$: the spread *within* a prompt, $\mu_x^2$: the differences *between*
# prompts). Which of the two is smaller at $c=0$ depends on the batch — rerun with another `seed` of
# `sample` and it can swap — and with 12 prompts the table cannot tell them apart (the ± are standard errors
# over the prompts: the two differ by less than 2 of them, asserted); the price is bounded (asserted: less
# than 2×). As soon as the rewards drift — and they do:
# training moves them by the proxy gain of section 2 — the variance without a baseline grows like $c^2$,
# while RLOO does not move at all and the running mean follows. At $c=1$ the growth may not yet outweigh
# RLOO's price (on one CPU it did, on another not); by $c=3$ the running mean, RLOO and the value are all well
# below no baseline, by more than 2 standard errors each (asserted). That is why RLOO (or any baseline that
# tracks the reward level) is the default in `reinforce_edu.llm.cli`.
#
# **Does a learned value beat a constant?** On the past data its features carry signal: the leave-one-out error
# of $V$ on the 32 held-out prompts is well below the constant's in the CPU run (1.04 against 1.93, a paired
# difference of −0.88 ± 0.31 over the prompts: resolved). Asserted is only that a finite ridge strength wins: a
# machine that samples other answers (bf16 instead of fp32) sees other past rewards, and the gap can be smaller.
# On this batch it gives the lowest variance of the four — 0.99 ± 0.27 against 1.11 ± 0.37 for
# the running mean fed the same past data, in the CPU run — but the difference is a quarter of a standard
# error: **not resolved at this budget** (asserted: less than 2 SE at every $c$). One reason is visible in the
# second line: $V$ must carry over from the held-out topics to 12 other prompts, and there its values do not
# visibly track the prompts' mean rewards (a correlation near 0, from 4 answers per prompt; over 12 prompts its
# standard error is about 0.3, so this is not resolved either). What is resolved: like RLOO, $V$ follows the
# offset exactly (its intercept is not penalised) and sits below no baseline at $c=3$; unlike RLOO it needs
# no second sample of a prompt and pays no $\frac{k}{k-1}$ price. More past data, or a critic trained along with
# the policy (PPO's, lesson 07), is what could make it pay.

# %%
print(f"lesson run time: {time.perf_counter() - start:.0f} s")

# %% [markdown]
# ## Exercises
#
# Each exercise asks you to write, from its formula, something the library implements. While a check runs,
# the library's own version of it is unavailable, so your answer must not call `reinforce_edu`. The check
# below each answer tries your function on several inputs and says what was expected, for which input,
# which usual mistake gives exactly your answer, and what to revisit. In a class, work in the released
# assignment (`python -m reinforce_edu.teaching.assignments release DIR`): there the worked solutions below
# are stripped. (Instructors: these cells carry nbgrader markup; see the README.)

# %% nbgrader={"grade": false, "grade_id": "setup_06", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch

from reinforce_edu.teaching import exercises


# %% [markdown] nbgrader={"grade": false, "grade_id": "completion_logprobs_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Exercise 12 — log-probs of the completion, with an EOS mask
#
# `logits` `(B, L, V)` come from one forward pass over `input_ids` `(B, L)` = prompt (length `prompt_length`) +
# completion (length T). Return the log-probability of each completion token, shape `(B, T)`, computed as
# gather − logsumexp (no full `log_softmax` copy), and 0 where `completion_mask` is 0 (after EOS).
# Mind the shift: the token at position p is predicted by the logits at p − 1.

# %% nbgrader={"grade": false, "grade_id": "completion_logprobs", "locked": false, "schema_version": 3, "solution": true, "task": false}
def completion_logprobs(logits, input_ids, prompt_length, completion_mask):
    ### BEGIN SOLUTION
    logits = logits[:, prompt_length - 1:-1].float()  # (B, T, V): positions that predict the completion
    tokens = input_ids[:, prompt_length:]  # (B, T)
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return (picked - logits.logsumexp(dim=-1)) * completion_mask
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "completion_logprobs_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
exercises.check_completion_logprobs(completion_logprobs)
### BEGIN HIDDEN TESTS
exercises.check_completion_logprobs(completion_logprobs, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "importance_weights_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Exercise 13 — an importance weight for a reused batch
#
# Sampling is the slow part of a step, so a trainer may take a second optimiser step on the same batch. By
# then the policy has moved: the batch came from $\pi_\text{old}$. Weight each completion by
# $w_i = \pi_\theta(y_i)/\pi_\text{old}(y_i) = \exp\sum_t m_{it}(\log\pi_\theta(y_{it}) - \log\pi_\text{old}(y_{it}))$
# (the sum in log space, over unmasked tokens only), and return the loss $-\frac1B\sum_i w_i A_i$. Inputs:
# `logp` (with gradient), `old_logp`, `mask` `(B, T)`; `advantages` `(B,)`. `old_logp` and the advantages are
# constants: at the first step, $\theta = \theta_\text{old}$, $w_i = 1$, and the gradient must be REINFORCE's. The
# check compares the gradient too, once with `old_logp` the very same tensor as `logp`.

# %% nbgrader={"grade": false, "grade_id": "importance_weights", "locked": false, "schema_version": 3, "solution": true, "task": false}
def importance_weights(logp, old_logp, advantages, mask):
    ### BEGIN SOLUTION
    log_w = ((logp - old_logp.detach()) * mask).sum(dim=1)  # (B,) log π_θ(y_i) − log π_old(y_i)
    return -(torch.exp(log_w) * advantages.detach()).mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "importance_weights_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
exercises.check_importance_weights(importance_weights)
### BEGIN HIDDEN TESTS
exercises.check_importance_weights(importance_weights, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "training_step_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Exercise 14 — one training step
#
# Write the step the trainer takes, on a bandit policy so it runs in a blink: `rewards` `(P, k)` for `actions`
# `(P, k)` sampled from `policy` at `prompts` `(P,)`. Zero the gradients; RLOO advantages; the surrogate loss
# $-\mathrm{mean}(\log\pi\cdot A)$; backward; clip the gradient norm to 1.0; and take the optimiser step **only if**
# the loss and the gradient norm are finite (a NaN reward must leave the weights untouched). Return the loss.
# The check calls your step twice with the *same* optimiser, as training does, and once with rewards that
# carry gradient (a KL penalty from the policy's own log-probs folded in, lesson 04): the advantage must be a
# constant for the loss.

# %% nbgrader={"grade": false, "grade_id": "training_step", "locked": false, "schema_version": 3, "solution": true, "task": false}
def training_step(policy, optimizer, prompts, actions, rewards):
    ### BEGIN SOLUTION
    optimizer.zero_grad()
    k = rewards.shape[1]
    adv = rewards - (rewards.sum(dim=1, keepdim=True) - rewards) / (k - 1)
    loss = -(policy.log_prob(prompts, actions) * adv.detach()).mean()
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), max_norm=1.0)
    if torch.isfinite(loss) and torch.isfinite(grad_norm):
        optimizer.step()
    return float(loss.detach())
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "training_step_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
exercises.check_training_step(training_step)
### BEGIN HIDDEN TESTS
exercises.check_training_step(training_step, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## Summary

# %%
print(f"| measured ({'CUDA' if CUDA else 'CPU'} settings) | value |")
print("|---|---|")
print(f"| held-out gold reward, before -> after {S['steps']} RLOO steps | {before['gold']:.2f} -> {after['gold']:.2f} ({rise / se:.1f} SE) |")
print(f"| held-out proxy reward, before -> after | {before['proxy']:.2f} -> {after['proxy']:.2f} |")
print(f"| KL to the reference, beta=0.05 vs beta=0 | {last_kl(log):.1f} vs {last_kl(read_log(RUNS / '06_beta0')):.1f} |")
print(f"| steps clipped at max norm 1.0 | {frac:.0%} |")
print(f"| gradient variance, RLOO / none, at c = 0 and c = 3 | {table[0.0]['rloo'] / table[0.0]['none']:.2f}, "
      f"{table[3.0]['rloo'] / table[3.0]['none']:.2f} |")
print(f"| gradient variance, learned value / running mean (any c) | {table[0.0]['value'] / table[0.0]['running_mean']:.2f} "
      f"({gap_se(0.0, 'value', 'running_mean'):+.1f} SE, not resolved) |")
print(f"| seconds per training step (this machine) | {sum(r['step_time'] for r in log) / len(log):.1f} |")

# %% [markdown]
# **What to try next**
# - `python -m reinforce_edu.train --help`: every setting with its meaning. Try `--baseline none` and
#   `--baseline running_mean` for the same number of steps and compare the gold reward.
# - `--kl-placement loss --kl-estimator k3` (the GRPO choice) instead of the KL folded into the reward.
# - `--aggregation seq_mean` (GRPO's per-sequence mean): does the completion length drift (lesson 03)?
# - `--trainable-blocks 0` fine-tunes every parameter (slow on a CPU, the default with CUDA).
# - Run the $\beta=0$ experiment for 200 steps on a GPU and plot gold against $\sqrt{\rm KL}$.
# - Kill a run (`Ctrl-C`, or `kill -9`) and restart it with `--resume`: it ends exactly where the
#   uninterrupted run would have.
