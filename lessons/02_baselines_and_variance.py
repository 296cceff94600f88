# %% [markdown]
# # 02 · Baselines and variance
#
# **What you will learn**
# - why subtracting a baseline $b$ from the reward leaves the policy gradient **unbiased** yet changes
#   its **variance**;
# - how to measure an estimator's variance from **per-sample gradients** (`torch.func.vmap` over `grad`);
# - five baselines — none, running mean, the seed's self-inclusive batch mean, leave-one-out (RLOO) and a
#   learned value — measured against the exact gradient: bias, variance, signal-to-noise;
# - why the seed's `baseline = returns.mean().detach()` shrinks the gradient by $(1 - 1/n)$, and how
#   leave-one-out fixes it;
# - why a **per-prompt** baseline beats a global one when prompts sit at different reward levels;
# - what goes wrong when a learned baseline is **not detached**;
# - how the variance moves with the baseline, samples per prompt, reward offset and number of arms —
#   in an interactive explorer.
#
# Lesson 01 showed the REINFORCE estimate is unbiased with an error $\propto n^{-1/2}$. This lesson
# attacks the constant in front of $n^{-1/2}$. Same bandit, same estimator, one new idea.

# %% [markdown]
# ## 1. A baseline keeps the gradient unbiased
#
# For any $b$ that does not depend on the sampled action $a$,
#
# $$\mathbb E_{a\sim\pi_\theta}\big[b\,\nabla_\theta\log\pi_\theta(a|x)\big]
# = b\sum_a \pi_\theta(a|x)\,\frac{\nabla_\theta\pi_\theta(a|x)}{\pi_\theta(a|x)}
# = b\,\nabla_\theta \underbrace{\sum_a \pi_\theta(a|x)}_{=1} = 0,$$
#
# so the estimator with **advantages** $A_i = R_i - b_i$,
#
# $$\hat g = \frac1n\sum_{i=1}^n (R_i - b_i)\,\nabla_\theta\log\pi_\theta(a_i|x_i),$$
#
# has the same mean $\nabla_\theta J$. Its variance is another matter: $(R_i - b_i)^2$ multiplies the
# squared score, so a $b_i$ close to $\mathbb E[R \mid x_i]$ makes the estimate quieter.
#
# | baseline | $b_{ij}$ for sample $j$ of prompt $i$ | unbiased? | *implemented in* `reinforce_edu/core/baselines.py` |
# |---|---|---|---|
# | none | $0$ | yes | `NoBaseline` |
# | running mean | EMA of *past* batches' mean return | yes | `RunningMeanBaseline` |
# | batch mean (the seed's) | $\frac1n\sum_{\text{batch}} R$, **sample itself included** | no: $\times(1-\frac1n)$ | `BatchMeanBaseline` |
# | leave-one-out (RLOO) | $\frac{1}{k-1}\sum_{l\ne j} R_{il}$ | yes | `LeaveOneOutBaseline` |
# | learned value | $V_\phi(x_i)$, regressed on past returns | yes | `ValueBaseline` |
#
# The estimator is `reinforce_edu/core/policy_gradient.py: surrogate_loss(logp, advantages)`, unchanged from
# lesson 01; `reinforce_edu/core/variance.py` measures it (equations in its docstring).

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

from reinforce_edu.toy.bandits import BanditBatch, ContextualBandit, make_bandit
from reinforce_edu.core.baselines import (BatchMeanBaseline, LeaveOneOutBaseline, NoBaseline, RunningMeanBaseline,
                                     ValueBaseline, advantages)
from reinforce_edu.teaching.explorer import VarianceExplorer
from reinforce_edu.core.policy_gradient import surrogate_loss
from reinforce_edu.core.significance import mean_se, mean_se_along, paired_difference
from reinforce_edu.toy.bandit_estimates import per_sample_estimates, reinforce_gradient
from reinforce_edu.core.variance import format_table
from reinforce_edu.teaching.plotting import plot_variance
from reinforce_edu.toy.bandit_estimates import compare_baselines, default_baselines

torch.set_num_threads(1)  # tiny tensors: one thread is faster, and the same numbers everywhere

bandit = make_bandit(n_prompts=4, n_arms=5, noise_std=0.5, seed=0)  # the bandit of lesson 01
policy = bandit.make_policy(init_std=1.0, seed=1)
P, A = bandit.n_prompts, bandit.n_arms
values = bandit.values(policy.logits)  # v(x) = E_π[R | x], (P,)
J = float(bandit.objective(policy.logits.detach()))
print("per-prompt value v(x):", [round(v, 2) for v in values.tolist()], f"  overall J = {J:.2f}")

# %% [markdown]
# ## 2. Per-sample gradients: how the variance is measured
#
# Everything below measures the spread of the estimate. Each sample contributes its own gradient
#
# $$g_i = A_i\,\nabla_\theta\log\pi_\theta(a_i|x_i), \qquad \hat g = \frac1n\sum_i g_i,$$
#
# and the variance of a random vector is summarised by the trace of its covariance,
# $\operatorname{tr}\operatorname{Cov}(g) = \sum_d \operatorname{Var}(g_{\cdot d})$ (the sum of the
# per-coordinate variances, each with the unbiased $1/(n-1)$).
#
# A loop of $n$ backward passes gives the $(n, D)$ matrix of the $g_i$ slowly; `torch.func.vmap` over
# `torch.func.grad` gives it in one vectorised call. *Implemented in* `reinforce_edu/core/per_sample.py:
# per_sample_grads` (any model, any per-sample loss, optionally a subset of the parameters — lesson 06
# uses it on the LLM's last block) and, for the bandit, `reinforce_edu/core/policy_gradient.py:
# per_sample_estimates`. The oracle: the same rows from a loop of one-sample batches through
# `reinforce_gradient`, the surrogate loss of lesson 01.

# %%
k_big = 256
batch = bandit.sample_batch(policy, k=k_big, generator=torch.Generator().manual_seed(7))  # n = P·k = 1024
loo = LeaveOneOutBaseline()

per_sample_estimates(policy, batch, loo)  # warm-up: the first vmap call traces the function
start = time.perf_counter()
g_vmap = per_sample_estimates(policy, batch, loo)  # (n, D) in one vmap(grad(...)) call
t_vmap = time.perf_counter() - start

adv = advantages(batch.rewards, loo)  # (P, k)
start = time.perf_counter()
g_loop = torch.stack([  # one backward pass per sample: a one-sample batch whose reward is its advantage
    reinforce_gradient(policy, BanditBatch(batch.prompts[x:x + 1], batch.actions[x:x + 1, j:j + 1],
                                           adv[x:x + 1, j:j + 1])).reshape(-1)
    for x in range(P) for j in range(k_big)])  # (n, D)
t_loop = time.perf_counter() - start

per_sample_var = float(g_vmap.double().var(0).sum())  # tr Cov(g_i)
print(f"n = {len(g_vmap)} samples, D = {g_vmap.shape[1]} parameters: vmap {1000 * t_vmap:.1f} ms, "
      f"loop {1000 * t_loop:.0f} ms (x{t_loop / t_vmap:.0f})")

# %%
# NBVAL_CHECK_OUTPUT
vmap_error = float((g_vmap - g_loop).abs().max())
mean_error = float((g_vmap.mean(0) - reinforce_gradient(policy, batch, loo).reshape(-1)).abs().max())
print(f"per-sample gradients, vmap vs loop: max abs difference < 1e-6: {vmap_error < 1e-6}")
print(f"mean of the rows = the batch estimate ĝ: {mean_error < 1e-6}")
print(f"tr Cov(g_i) with leave-one-out, one sample: {per_sample_var:.3g}")
assert vmap_error < 1e-6 and mean_error < 1e-6

# %% [markdown]
# ## 3. Five baselines on the same samples
#
# `compare_baselines` draws $M$ batches once and runs every baseline on **the same** batches (common
# random numbers), so the differences come from the baseline alone. Each batch has $k = 2$ samples for
# each of $P = 4$ prompts: $n = 8$ samples, few enough that the batch mean's $1/n$ shows. Stateful
# baselines (running mean, value) are called, then updated, batch after batch — as in training.
#
# Columns: `variance` $=\operatorname{tr}\operatorname{Cov}(\hat g)$ of one batch's estimate;
# `bias_norm` $=\|\bar g - \nabla J\|$ for the mean $\bar g$ of the $M$ estimates and `noise_floor`
# $=\sqrt{\operatorname{tr}\operatorname{Cov}/M}$ the size it has from noise alone;
# `shrink` $=\langle \bar g, \nabla J\rangle / \|\nabla J\|^2$ (1 when unbiased) and its standard error;
# `snr` $=\|\nabla J\|^2 / \operatorname{tr}\operatorname{Cov}$.

# %%
K, M = 2, 4000
n = P * K  # samples in one batch
rows = compare_baselines(bandit, policy, k=K, n_batches=M, seed=0)
by_name = {r["baseline"]: r for r in rows}
columns = ("variance", "bias_norm", "noise_floor", "shrink", "shrink_se", "snr")

# %%
# NBVAL_CHECK_OUTPUT
print(f"{M} batches of n = P·k = {P}·{K} = {n} samples\n")
print(format_table(rows, columns=columns, significant=True))

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.4))
plot_variance(rows, ax=ax, title=f"Variance of the REINFORCE estimate per baseline (n = {n})")
plt.show()

# %% [markdown]
# Reading the table, three claims — each is asserted below:
#
# 1. **Per-prompt baselines cut the variance**: leave-one-out and the learned value are well below none.
# 2. **Unbiased baselines stay unbiased**: none, running mean, leave-one-out and value have a shrink within
#    4 standard errors of 1.
# 3. **The seed's batch mean is biased**: its shrink sits within 4 SE of $1 - 1/n = 0.875$ and many SE
#    away from 1. Section 6 explains the number.

# %%
# NBVAL_CHECK_OUTPUT
for name in ("leave_one_out", "value"):
    ratio = by_name["none"]["variance"] / by_name[name]["variance"]
    print(f"variance: none / {name:<13} = {ratio:.1f}x")
    assert by_name[name]["variance"] < by_name["none"]["variance"]
for name in ("none", "running_mean", "leave_one_out", "value"):
    r = by_name[name]
    z1 = (r["shrink"] - 1) / r["shrink_se"]
    print(f"{name:<13} shrink {r['shrink']:.2f} ± {r['shrink_se']:.2f}: {abs(z1):.1f} SE from 1")
    assert abs(z1) < 4
r = by_name["batch_mean"]
target = 1 - 1 / n
z_target, z1 = (r["shrink"] - target) / r["shrink_se"], (r["shrink"] - 1) / r["shrink_se"]
print(f"batch_mean    shrink {r['shrink']:.2f} ± {r['shrink_se']:.2f}: {abs(z_target):.1f} SE from 1 − 1/n = "
      f"{target:.3f}, {abs(z1):.1f} SE from 1")
assert abs(z_target) < 4 and abs(z1) > 4

# %% [markdown]
# **The seed's two claims about bias, checked.** The seed text says a running mean has "a slight bias" and a
# per-prompt mean is unbiased. Both are the wrong way round. A running mean of **past** returns is a constant
# as far as the current sample is concerned — it was fixed before the sample was drawn — so section 1's
# argument applies and it is **unbiased** (its shrink above sits within noise of 1). What biases a baseline is
# containing the **current** sample: the seed's batch mean (above), a per-prompt mean taken over the prompt's
# own $k$ samples, self included (shrink $1-\frac1k$), or a running mean updated with the current batch
# *before* it is used, $b = d\,b_{\text{past}} + (1-d)\,\bar R_{\text{batch}}$, which holds $(1-d)R_i/n$ of each
# sample (shrink $1-\frac{1-d}{n}$; `RunningMeanBaseline(include_current=True)`). Measured on 4000 batches
# each, decay $d = 0.5$:

# %%
bias_cases = [("running mean, past batches only", RunningMeanBaseline(decay=0.5), 1, 1.0),
              ("running mean, current batch folded in", RunningMeanBaseline(decay=0.5, include_current=True), 1,
               1 - 0.5 / P),
              ("per-prompt mean, self included", BatchMeanBaseline(per_prompt=True), 2, 1 - 1 / 2)]
bias_rows = []
for label, baseline, k_case, theory in bias_cases:
    (r,) = compare_baselines(bandit, policy, {label: baseline}, k=k_case, n_batches=4000, seed=2)
    bias_rows.append((label, P * k_case, r["shrink"], r["shrink_se"], theory))

# %%
# NBVAL_CHECK_OUTPUT
for label, n_case, s, se, theory in bias_rows:
    print(f"{label:<38} n = {n_case}: shrink {s:.3f} ± {se:.3f}, theory {theory:.3f} "
          f"({abs(s - theory) / se:.1f} SE), {abs(s - 1) / se:.1f} SE from 1")
    assert abs(s - theory) < 4 * se  # every case where its formula puts it
assert abs(bias_rows[0][2] - 1) < 4 * bias_rows[0][3]  # past batches only: unbiased (the seed: "slight bias")
assert all(abs(s - 1) > 4 * se for _, _, s, se, _ in bias_rows[1:])  # current sample included: biased

# %% [markdown]
# ## 4. Per-prompt versus global baselines
#
# The prompts sit at different reward levels, $v(x)$ printed above from 0.56 to 2.97. A **global**
# baseline (running mean, batch mean) subtracts one number from every prompt; what is left,
# $v(x) - b$, stays in every advantage and multiplies the score: variance that carries no signal.
# A **per-prompt** baseline (leave-one-out, value) subtracts an estimate of $v(x)$ itself.
#
# The test: build a second bandit with the *same* arms but every prompt moved to the same level,
# $r'(x,a) = r(x,a) - v(x) + J$. The gradient is unchanged ($\nabla J$ ignores per-prompt constants);
# the global baseline should now do as well as the per-prompt ones, and the per-prompt ones should not notice.

# %%
levelled = ContextualBandit(bandit.mean_rewards - values[:, None] + J, noise_std=bandit.noise_std)
assert torch.allclose(levelled.exact_gradient(policy.logits), bandit.exact_gradient(policy.logits), atol=1e-6)

def few_baselines():
    return {"running_mean": RunningMeanBaseline(), "leave_one_out": LeaveOneOutBaseline(),
            "value": ValueBaseline(n_prompts=P)}

level_stats = {label: {r["baseline"]: r for r in compare_baselines(b, policy, few_baselines(), k=K, n_batches=M,
                                                                 seed=0)}
               for label, b in (("levels differ", bandit), ("levels equal", levelled))}
level_rows = {label: {name: r["variance"] for name, r in rows.items()} for label, rows in level_stats.items()}

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'prompt levels':<15}{'running_mean':>14}{'leave_one_out':>15}{'value':>9}   running_mean / value")
for label, v in level_rows.items():
    print(f"{label:<15}{v['running_mean']:>14.3g}{v['leave_one_out']:>15.3g}{v['value']:>9.3g}"
          f"   {v['running_mean'] / v['value']:.2f}")
differ, equal = level_rows["levels differ"], level_rows["levels equal"]
assert differ["running_mean"] > 2 * differ["value"]  # a global baseline pays for the level spread
assert equal["running_mean"] < 1.5 * equal["value"]  # ... and stops paying once the levels agree
assert abs(equal["leave_one_out"] / differ["leave_one_out"] - 1) < 1e-3  # per-prompt: unaffected

# %% [markdown]
# With the levels equal the order even **reverses**: the running mean beats leave-one-out. At $k = 2$
# leave-one-out's baseline for a sample is the *one* other sample of its prompt, as noisy as the sample
# itself: $\operatorname{Var}(R_j - R_l) = 2\sigma^2$ where a baseline averaged over many past batches leaves
# $\approx\sigma^2$. In general leave-one-out pays a factor $1 + \frac{1}{k-1} = \frac{k}{k-1}$ for its own noise
# (on the advantage; on the gradient only about that, since the advantage and the score are not independent:
# measured 2.11 ± 0.04 here).
# So "none > running mean > per-prompt > value" holds only when the prompts' levels differ by more than that
# noise; with equal levels a global running mean is as good as a learned per-prompt value, and leave-one-out
# at small $k$ is the worst of the three. (Lesson 03 finds the same on a sequence task whose prompts sit at
# one level.)

# %%
# NBVAL_CHECK_OUTPUT
eq = level_stats["levels equal"]
for name in ("running_mean", "leave_one_out", "value"):
    print(f"levels equal, {name:<13}: tr Cov {eq[name]['variance']:.4f} ± {eq[name]['variance_se']:.4f}")
loo_run = eq["leave_one_out"]["variance"] / eq["running_mean"]["variance"]
loo_run_se = loo_run * math.sqrt(sum((eq[n]["variance_se"] / eq[n]["variance"]) ** 2
                                     for n in ("leave_one_out", "running_mean")))
print(f"leave-one-out / running mean = {loo_run:.2f} ± {loo_run_se:.2f}   (k/(k − 1) = {K / (K - 1):.0f} at k = {K})")
assert loo_run - 1 > 4 * loo_run_se  # reversed: the running mean is quieter when levels are equal
assert 1.8 < loo_run < 2.4  # ... by about k/(k − 1) = 2 (not exactly: A and the score are not independent)

# %% [markdown]
# For an LLM, prompts are the rule, not the exception: "write a haiku" and "prove this lemma" earn very
# different rewards. That is why RLOO and GRPO compare samples *of the same prompt*.
#
# ## 5. A constant baseline: the mean stays, the variance moves
#
# Adding a constant $c$ to every reward is the same as the baseline $b = -c$. The mean gradient must
# not move; the variance of plain REINFORCE should be a parabola in $c$, smallest near $c = -J$ (when the
# rewards are centred), while leave-one-out subtracts the offset back out exactly. We sweep $c$ on
# the same samples (`make_bandit(..., offset=c)` keeps the arms, adds $c$).

# %%
offsets = np.arange(-6.0, 8.5, 1.0)
sweep = {"none": [], "leave_one_out": []}
for c in offsets:
    shifted = make_bandit(n_prompts=4, n_arms=5, noise_std=0.5, offset=float(c), seed=0)
    for r in compare_baselines(shifted, policy, {"none": NoBaseline(), "leave_one_out": LeaveOneOutBaseline()},
                               k=K, n_batches=1000, seed=0):
        sweep[r["baseline"]].append(r)
var = {name: np.array([r["variance"] for r in rs]) for name, rs in sweep.items()}
shrink = np.array([r["shrink"] for r in sweep["none"]])
shrink_se = np.array([r["shrink_se"] for r in sweep["none"]])

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
ax1.semilogy(offsets, var["none"], "o-", label="none")
ax1.semilogy(offsets, var["leave_one_out"], "s-", label="leave-one-out")
ax1.axvline(-J, color="grey", ls=":", label="c = −J (rewards centred)")
ax1.set_xlabel("reward offset c  (≡ constant baseline b = −c)")
ax1.set_ylabel("tr Cov(ĝ)")
ax1.set_title("Variance moves with a constant")
ax1.legend(fontsize=8)
ax2.errorbar(offsets, shrink, yerr=4 * shrink_se, fmt="o", capsize=2, label="none: shrink ± 4 SE")
ax2.axhline(1, color="k", ls="--", lw=1)
ax2.set_xlabel("reward offset c")
ax2.set_ylabel("⟨mean ĝ, ∇J⟩ / ‖∇J‖²")
ax2.set_title("... the mean does not")
ax2.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
best = offsets[var["none"].argmin()]
print(f"none: variance {var['none'].min():.3g} at c = {best:+.0f} (−J = {-J:+.2f}), "
      f"{var['none'][-1]:.3g} at c = {offsets[-1]:+.0f}: x{var['none'][-1] / var['none'].min():.0f}")
print(f"none: shrink within 4 SE of 1 at every offset: {bool((abs(shrink - 1) < 4 * shrink_se).all())}")
spread = var["leave_one_out"].max() / var["leave_one_out"].min() - 1
print(f"leave-one-out: variance {var['leave_one_out'][0]:.3g} at every offset (relative spread < 1e-4: {spread < 1e-4})")
assert (abs(shrink - 1) < 4 * shrink_se).all()
assert var["none"][-1] > 10 * var["none"].min() and abs(best + J) <= 1.0
assert spread < 1e-4

# %% [markdown]
# An LLM reward model's scores have an arbitrary zero. Without a baseline, that arbitrary zero decides
# how noisy the training is.
#
# ## 6. The seed's batch mean shrinks the gradient by $(1 - 1/n)$
#
# The seed writes `baseline = returns.mean().detach()`: the mean of the **whole batch, sample $i$
# included**. Then $b$ depends on $a_i$ through $R_i/n$, and the argument of section 1 fails for that
# part:
#
# $$\mathbb E\big[(R_i - b)\nabla\log\pi(a_i)\big]
# = \big(1-\tfrac1n\big)\mathbb E\big[R_i\nabla\log\pi(a_i)\big] - \tfrac1n\sum_{j\ne i}\underbrace{\mathbb E[R_j]\,\mathbb E\big[\nabla\log\pi(a_i)\big]}_{0}
# = \big(1-\tfrac1n\big)\,\nabla J .$$
#
# Within one group of $n$ samples the relation is exact sample by sample:
# $R_i - \bar R = \frac{n-1}{n}\big(R_i - \bar R_{-i}\big)$, where $\bar R_{-i}$ is the leave-one-out
# mean. The fix is leave-one-out (RLOO), or rescaling by $n/(n-1)$ — the same thing for one group.
# `advantages(returns, baseline)` from `reinforce_edu/core/baselines.py` shows it on one group of 8:

# %%
group = torch.randn(1, 8, generator=torch.Generator().manual_seed(5)) + 2.0  # one prompt, 8 returns: (1, 8)
a_batch = advantages(group, BatchMeanBaseline())
a_loo = advantages(group, LeaveOneOutBaseline())
identity_error = float((a_batch - (1 - 1 / 8) * a_loo).abs().max())

# %%
# NBVAL_CHECK_OUTPUT
print(f"batch-mean advantage = (1 − 1/8) × leave-one-out advantage, max abs error < 1e-6: {identity_error < 1e-6}")
assert identity_error < 1e-6

# %% [markdown]
# Measured for batches of $n = P k = 4, 8, 16, 32$ (the same bandit, 4000 batches each):
# the shrink follows $1 - 1/n$; leave-one-out stays at 1. At the batch sizes of LLM training
# ($n$ in the hundreds) the shrink is small — but it is a systematic bias that no amount of data
# removes. The formula puts the worst case at a batch of $n = 2$ (one prompt, $k = 2$): a factor
# $1 - 1/2$, half the gradient. The smallest batch measured here is $n = 4$ (factor $0.75$).

# %%
shrink_rows = []
for k in (1, 2, 4, 8):
    (r,) = compare_baselines(bandit, policy, {"batch_mean": BatchMeanBaseline()}, k=k, n_batches=4000, seed=1)
    shrink_rows.append((P * k, r["shrink"], r["shrink_se"]))
ns_b, s_b, se_b = map(np.array, zip(*shrink_rows))
loo = [compare_baselines(bandit, policy, {"leave_one_out": LeaveOneOutBaseline()}, k=k, n_batches=4000, seed=1)[0]
       for k in (2, 4, 8)]

fig, ax = plt.subplots(figsize=(5.5, 3.4))
grid = np.linspace(3.5, 34, 200)
ax.plot(grid, 1 - 1 / grid, "k--", lw=1, label="1 − 1/n")
ax.errorbar(ns_b, s_b, yerr=4 * se_b, fmt="o", capsize=3, label="batch mean (self-inclusive) ± 4 SE")
ax.errorbar([8, 16, 32], [r["shrink"] for r in loo], yerr=[4 * r["shrink_se"] for r in loo], fmt="s",
            capsize=3, label="leave-one-out ± 4 SE")
ax.set_xscale("log", base=2)
ax.set_xlabel("samples per batch n = P·k")
ax.set_ylabel("shrink ⟨mean ĝ, ∇J⟩ / ‖∇J‖²")
ax.set_title("The seed's baseline shrinks ∇J by (1 − 1/n)")
ax.legend(fontsize=8)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
for n_, s, se in shrink_rows:
    print(f"n = {n_:>2}: batch-mean shrink {s:.3f} ± {se:.3f}   1 − 1/n = {1 - 1 / n_:.3f}   "
          f"({abs(s - (1 - 1 / n_)) / se:.1f} SE)")
    assert abs(s - (1 - 1 / n_)) < 4 * se
assert all(abs(r["shrink"] - 1) < 4 * r["shrink_se"] for r in loo)

# %% [markdown]
# ## 7. A learned baseline must be detached
#
# A learned value $V_\phi(x)$ is fitted to the returns by its own regression step
# (`ValueBaseline.update`: $V_\phi(x) \leftarrow V_\phi(x) + \eta\,(\bar R_x - V_\phi(x))$). It must enter
# the policy loss as a **constant**. The seed does this right (`baseline = returns.mean().detach()`, and
# "using detach() on the baseline is mandatory"); here we measure what happens when it is forgotten — the
# seed's loss line `loss = -(logp * (returns - V)).mean()` with a learned `V` that carries gradient. Then
# the policy loss also trains $\phi$:
#
# $$\frac{\partial L}{\partial V_\phi(x)} = \frac{1}{n}\sum_{j:\,x_j = x} \log\pi_\theta(a_j|x),
# \qquad \mathbb E\Big[\frac{\partial L}{\partial V_\phi(x)}\Big] = -\frac{k}{n}\, H\big(\pi_\theta(\cdot|x)\big) < 0 .$$
#
# An optimiser that holds $\phi$ (one optimiser for the whole model, as with a value head on an LLM)
# therefore pushes **every** $V_\phi(x)$ upward by an amount set by the policy's entropy, whatever the
# returns are — away from the true $v(x)$. When $V_\phi$ shares parameters with the policy, the same
# leak enters the policy gradient itself as an extra term $\mathbb E[\log\pi_\theta\,\nabla_\theta V]$.
# (`surrogate_loss` detaches its advantages, so the library cannot make this mistake: we write the
# faulty line by hand.)
#
# First the gradient that leaks into $\phi$, measured over 2000 batches at the true values, against
# $-\frac{k}{n}H = -H/P$ — `ValueBaseline(detach=False)` returns $V$ still in the graph:

# %%
leaky = ValueBaseline(n_prompts=P, detach=False)
with torch.no_grad():
    leaky.values.copy_(values)  # start at the truth: the regression gradient is zero on average
gen = torch.Generator().manual_seed(6)
leaks = []
for _ in range(2000):
    batch = bandit.sample_batch(policy, k=4, generator=gen)
    logp = policy.log_prob(batch.prompts, batch.actions)  # (P, k)
    loss = -(logp * (batch.rewards - leaky(batch.rewards, batch.prompts))).mean()  # the seed's loss line, V not detached
    leaks.append(torch.autograd.grad(loss, [leaky.values])[0])  # (P,)
leaks = torch.stack(leaks).double()  # (2000, P)
probs = policy.probs().double()
entropy = -(probs * probs.log()).sum(-1)  # H(π(·|x)), (P,)
leak_mean, leak_se = mean_se_along(leaks, 0)  # (P,) each: mean over the 2000 batches, sd / √2000
z_leak = (leak_mean + entropy / P) / leak_se

# %%
# NBVAL_CHECK_OUTPUT
print("mean ∂L/∂V(x):", [f"{g:.3f}" for g in leak_mean.tolist()])
print("−H(π(·|x))/P: ", [f"{g:.3f}" for g in (-entropy / P).tolist()])
print(f"largest distance: {z_leak.abs().max():.1f} SE")
assert bool((z_leak.abs() < 4).all()) and bool((leak_mean < 0).all())


# %% [markdown]
# Now train: one SGD optimiser (lr 1.0) holds both the policy logits and the values, the value also takes
# its regression step, 300 steps, $k = 4$, ten seeds (mean ± one standard error over seeds). **Detached**: advantages from
# `advantages(returns, ValueBaseline(...))` into `surrogate_loss`. **Not detached**: the seed's loss line
# with the detach forgotten. We track the value error $\frac1P\sum_x |V_\phi(x) - v_{\pi_\theta}(x)|$ against the true values of the current
# policy (`ContextualBandit.values`) and $J(\theta)$.

# %%
def train_value(detach: bool, seed: int, steps: int = 300, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    policy = bandit.make_policy()
    value = ValueBaseline(n_prompts=P, lr=0.1, detach=detach)
    opt = torch.optim.SGD([policy.logits, value.values], lr=1.0)  # one optimiser for policy and value
    gen = torch.Generator().manual_seed(seed)
    errors, curve = [], []
    for _ in range(steps):
        batch = bandit.sample_batch(policy, k=k, generator=gen)
        logp = policy.log_prob(batch.prompts, batch.actions)  # (P, k)
        if detach:
            loss = surrogate_loss(logp, advantages(batch.rewards, value, batch.prompts))
        else:
            loss = -(logp * (batch.rewards - value(batch.rewards, batch.prompts))).mean()  # the fault
        opt.zero_grad()
        loss.backward()
        opt.step()
        value.update(batch.rewards, batch.prompts)  # the regression step, in both cases
        errors.append(float((value.values.detach() - bandit.values(policy.logits)).abs().mean()))
        curve.append(float(bandit.objective(policy.logits.detach())))
    return np.array(errors), np.array(curve)


VALUE_SEEDS = 10
runs = {d: [train_value(d, s) for s in range(VALUE_SEEDS)] for d in (True, False)}
err = {d: np.mean([e for e, _ in rs], axis=0) for d, rs in runs.items()}
jcurve = {d: np.mean([c for _, c in rs], axis=0) for d, rs in runs.items()}
j_final = {d: np.array([c[-1] for _, c in rs]) for d, rs in runs.items()}  # (seeds,) J after the last step

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
for d, label in ((True, "detached"), (False, "not detached")):
    ax1.plot(err[d], label=label)
    ax2.plot(jcurve[d], label=label)
ax2.axhline(bandit.optimal_value(), color="k", ls="--", lw=1, label="optimum")
ax1.set_xlabel("step"); ax1.set_ylabel("mean |V(x) − v(x)|"); ax1.set_title("Value error over training")
ax2.set_xlabel("step"); ax2.set_ylabel("J(θ)"); ax2.set_title(f"J(θ) over training (mean of {VALUE_SEEDS} seeds)")
ax1.legend(fontsize=8); ax2.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
late = {d: float(e[-100:].mean()) for d, e in err.items()}
print(f"value error |V − v| over the last 100 steps: detached {late[True]:.3f}, not detached {late[False]:.3f} "
      f"(x{late[False] / late[True]:.0f})")
(j_det, j_det_se), (j_not, j_not_se) = (mean_se(j_final[d].tolist()) for d in (True, False))
# paired: seed s draws the same first batch with and without the detach
gap = paired_difference(j_final[True].tolist(), j_final[False].tolist(), ("detached", "not detached"))
print(f"final J over {VALUE_SEEDS} seeds (± 1 SE): detached {j_det:.3f} ± {j_det_se:.3f}, "
      f"not detached {j_not:.3f} ± {j_not_se:.3f}, optimum {bandit.optimal_value():.3f}")
print(f"detached − not detached: {gap.mean:.3f} ± {gap.se:.3f} ({gap.mean / gap.se:.1f} SE)")
assert late[False] > 5 * late[True]
assert gap.mean > 3 * gap.se  # resolved: forgetting the detach costs J

# %% [markdown]
# ## 8. Explore: baseline × samples per prompt × reward offset × arms
#
# `reinforce_edu/teaching/explorer.py: VarianceExplorer` wraps `compare_baselines` and `plot_variance` in four
# widgets. Every change measures the selected baselines on 100 batches (fixed seed) of the chosen
# bandit — a baseline already measured at the same $k$, offset and arms is kept, so toggling one costs
# no measurement — and redraws; the status line under the plot prints the variances. Things to look for: the none
# bar as you move the offset; leave-one-out against the learned value as $k$ grows; what more arms do to
# every bar. (The red markers are $\|\bar g - \nabla J\|^2$ over only 100 batches — mostly noise, of size
# $\operatorname{tr}\operatorname{Cov}/100$; section 3 needed 4000 batches to see the batch mean's bias.)

# %%
explorer = VarianceExplorer()
display(explorer.widget)

# %% [markdown]
# How long a redraw takes — moving each control in turn, as a user would. Timings depend on the machine
# and on what else it is doing, so they are printed here and not checked; the target (median ≤ 0.2 s) is
# measured by `benchmarks/explorer_redraw.py`, against a full redraw of the same figure in the same run.

# %%
for control, value in [("k", 8), ("k", 3), ("offset", 5.0), ("offset", -2.0), ("n_arms", 10), ("n_arms", 3),
                       ("baselines", ("none", "leave_one_out")), ("baselines", ("none", "batch_mean", "value")),
                       ("k", 4), ("offset", 0.0), ("n_arms", 5), ("baselines", tuple(default_baselines(P)))]:
    getattr(explorer, control).value = value  # each assignment triggers one redraw
times = np.array(explorer.redraw_times)
redraw_median, redraw_max = float(np.median(times)), float(times.max())
print(f"{len(times)} redraws: median {1000 * redraw_median:.0f} ms, max {1000 * redraw_max:.0f} ms")

# %% [markdown]
# Where widgets cannot render (a static viewer, a printed page), here is the same plot for the explorer's
# default setting and with one control changed at a time:

# %%
fig = explorer.static_figure([{}, {"k": 8}, {"offset": 5.0}, {"n_arms": 12}])
plt.show()

# %% [markdown]
# ## Exercises
#
# Each exercise asks you to write, from its formula, something the library implements. While a check runs,
# the library's own version of it is unavailable, so your answer must not call `reinforce_edu`. The check
# below each answer tries your function on several inputs and says what was expected, for which input,
# which usual mistake gives exactly your answer, and what to revisit. In a class, work in the released
# assignment (`python -m reinforce_edu.teaching.assignments release DIR`): there the worked solutions below
# are stripped. (Instructors: these cells carry nbgrader markup; see the README.)

# %% nbgrader={"grade": false, "grade_id": "setup_02", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch

from reinforce_edu.teaching import exercises


# %% [markdown] nbgrader={"grade": false, "grade_id": "leave_one_out_baseline_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Exercise 2 — the leave-one-out baseline
#
# `returns` has shape `(P, k)`: P prompts, k samples each. Return the RLOO baseline of every sample,
# $b_{ij} = \frac{1}{k-1}\sum_{l\ne j} R_{il}$, shape `(P, k)` — vectorised, no Python loop. (Lesson 06's
# advantages are $R - b$ of exactly this.)

# %% nbgrader={"grade": false, "grade_id": "leave_one_out_baseline", "locked": false, "schema_version": 3, "solution": true, "task": false}
def leave_one_out_baseline(returns):
    ### BEGIN SOLUTION
    k = returns.shape[1]
    return (returns.sum(dim=1, keepdim=True) - returns) / (k - 1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "leave_one_out_baseline_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
exercises.check_leave_one_out_baseline(leave_one_out_baseline)
### BEGIN HIDDEN TESTS
exercises.check_leave_one_out_baseline(leave_one_out_baseline, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "running_mean_baselines_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Exercise 3 — the running-mean baseline
#
# Given the mean return of each successive batch (a list of floats) and a decay $d$, return the list of
# baselines *used* for each batch: the value before that batch is folded in (so the gradient stays unbiased).
# Start from 0; the first update takes the batch mean outright; after that $b \leftarrow d\,b + (1-d)\,\bar R$.

# %% nbgrader={"grade": false, "grade_id": "running_mean_baselines", "locked": false, "schema_version": 3, "solution": true, "task": false}
def running_mean_baselines(batch_means, decay):
    ### BEGIN SOLUTION
    b, used = 0.0, []
    for i, m in enumerate(batch_means):
        used.append(b)
        b = m if i == 0 else decay * b + (1 - decay) * m
    return used
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "running_mean_baselines_check", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
exercises.check_running_mean_baselines(running_mean_baselines)
### BEGIN HIDDEN TESTS
exercises.check_running_mean_baselines(running_mean_baselines, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "gradient_variance_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Exercise 4 — per-sample gradient variance, batched
#
# For a `SoftmaxPolicy` (parameter `policy.logits`, shape `(P, A)`) and n samples (`prompts`, `actions`,
# `advantages`, each `(n,)`), compute the per-sample estimates $g_i = A_i\nabla_\theta\log\pi_\theta(a_i|x_i)$
# **all at once** with `torch.func` (`vmap` over `grad`), and return their total variance: the trace of their
# sample covariance (divide by n − 1), as a float. The check also counts the torch calls your function makes at
# n = 8 and n = 64: a Python loop over the samples (one backward pass each) gives the right number but fails.

# %% nbgrader={"grade": false, "grade_id": "gradient_variance", "locked": false, "schema_version": 3, "solution": true, "task": false}
from torch.func import grad, vmap

def gradient_variance(policy, prompts, actions, advantages):
    ### BEGIN SOLUTION
    def one(theta, x, a, adv):  # A_i · log π_θ(a_i | x_i) for one sample
        return adv * torch.log_softmax(theta[x.unsqueeze(0)][0], -1).gather(0, a.unsqueeze(0))[0]
    g = vmap(grad(one), in_dims=(None, 0, 0, 0))(policy.logits.detach(), prompts, actions, advantages)
    return float(g.reshape(len(prompts), -1).var(dim=0).sum())
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "gradient_variance_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
exercises.check_gradient_variance(gradient_variance)
### BEGIN HIDDEN TESTS
exercises.check_gradient_variance(gradient_variance, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "baseline_shrink_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Exercise 5 — measure, then decide: is the self-inclusive mean unbiased?
# Claim: *"the seed's baseline — the batch's own mean return, the sample itself included — leaves the policy
# gradient unbiased."* Test it on a bandit small enough that the check knows the exact answer (set up below:
# one prompt, 4 arms, noiseless rewards, $k = 2$ samples per batch). Draw M batches with `sample_batches`; for
# each, the advantages $A_i = R_i - \bar R$ (the batch's own mean) and the estimate of Exercise 1,
# $\hat g_m = \frac1k\sum_i A_i(e_{a_i} - \pi)$; project it on the exact gradient:
# $s_m = \hat g_m\cdot\nabla J/|\nabla J|^2$ ($s = 1$ along $\nabla J$ means unbiased).
# Return `shrink_estimate` (the mean of the $s_m$), `shrink_se` (its standard error), `decision` (`"refuted"` if
# the estimate lies more than 3 SE from 1, else `"supported"`) and `n_batches` (M).
#
# Graded against the exact value, which the check computes by enumerating every batch: your estimate must lie
# within 3 of *your* standard errors of it, your SE must be small enough to decide (≤ 0.1) and fit your M, and
# the decision must be right. M = 2000 takes a second or two.

# %% nbgrader={"grade": false, "grade_id": "setup_baseline_shrink", "locked": true, "schema_version": 3, "solution": false, "task": false}
from reinforce_edu.teaching.exercises.measurement import K, POLICY, SETTING
from reinforce_edu.toy.bandit_estimates import sample_batches
from reinforce_edu.toy.bandits import make_bandit

bandit = make_bandit(**SETTING)  # one prompt, 4 arms, noiseless rewards
policy = bandit.make_policy(**POLICY)
probs = torch.softmax(policy.logits.detach().double(), -1)[0]  # π, (A,)
exact = bandit.exact_gradient(policy.logits).double()[0]  # ∇J, (A,)

# %% nbgrader={"grade": false, "grade_id": "baseline_shrink", "locked": false, "schema_version": 3, "solution": true, "task": false}
def measure_shrink():
    ### BEGIN SOLUTION
    from reinforce_edu.core.significance import mean_se

    n_batches = 2000
    batches = sample_batches(bandit, policy, n_batches, K, seed=1)  # actions, rewards: (M, 1, K)
    rewards, actions = batches.rewards[:, 0].double(), batches.actions[:, 0]  # (M, K)
    adv = rewards - rewards.mean(dim=1, keepdim=True)  # the self-inclusive batch mean as baseline
    onehot = torch.nn.functional.one_hot(actions, len(probs)).double()  # (M, K, A)
    g = (adv[..., None] * (onehot - probs)).mean(dim=1)  # (M, A): ĝ of each batch
    s = g @ exact / exact.square().sum()  # (M,) projection on ∇J
    estimate, se = mean_se(s.tolist())  # mean of the s_m, and sd(s) / √M
    decision = "refuted" if abs(estimate - 1) > 3 * se else "supported"
    return estimate, se, decision, n_batches
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "baseline_shrink_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
shrink_estimate, shrink_se, decision, n_batches = measure_shrink()
exercises.check_baseline_shrink(shrink_estimate, shrink_se, decision, n_batches)
### BEGIN HIDDEN TESTS
exercises.check_baseline_shrink(shrink_estimate, shrink_se, decision, n_batches, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "self_inclusive_shrink_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Exercise 6 — why does the self-inclusive mean shrink the gradient? (written, 2 points)
#
# In 3–6 sentences, in the cell below: why is $\mathbb E[\hat g] = (1 - 1/n)\nabla J$ when the baseline is the
# batch's own mean with the sample itself included? Why does leave-one-out not shrink it? What did your
# measurement in Exercise 5 show? (Graded by hand.)

# %% [markdown] nbgrader={"grade": true, "grade_id": "self_inclusive_shrink", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# ### BEGIN SOLUTION
# **Model answer.** The baseline $\bar R = \frac1n\sum_j R_j$ contains the sample's own reward $R_i$, so the term
# $\bar R\,\nabla\log\pi(a_i)$ has a part $\frac1n R_i\nabla\log\pi(a_i)$ whose expectation is not zero: it is
# $\frac1n$ of that sample's own contribution to $\nabla J$. The other $n-1$ rewards are independent of $a_i$, and
# $\mathbb E[\nabla\log\pi(a_i)] = 0$, so their part vanishes. Altogether $\mathbb E[\hat g] = \nabla J - \frac1n\nabla J$:
# the right direction, too short by $1/n$. Leave-one-out uses only the *other* samples' rewards, independent of
# $a_i$, so it is unbiased; indeed $R_i - \bar R = \frac{n-1}{n}(R_i - b_i^{\rm LOO})$ exactly. Exercise 5 measured
# $s \approx 0.5 = 1 - 1/2$ at $n = 2$, tens of standard errors from 1: the claim is refuted.
#
# **Rubric (2 points).** 1 point: the baseline depends on the sample's own reward (the $R_i/n$ term), while the
# other terms vanish because $\mathbb E[\nabla\log\pi] = 0$. 1 point: leave-one-out is independent of the sample,
# hence unbiased (or the $\frac{n-1}{n}$ identity), tied to the measured $s\approx 0.5$. No point for "a baseline
# reduces variance" alone: the question is about the mean.
# ### END SOLUTION

# %% [markdown]
# ## Summary

# %%
# NBVAL_CHECK_OUTPUT
summary = [
    ("per-sample gradients: vmap = loop of backward passes", f"{vmap_error < 1e-6}"),
    (f"variance, n = {n}: none / leave-one-out / value",
     f"{by_name['none']['variance']:.3g} / {by_name['leave_one_out']['variance']:.3g} / {by_name['value']['variance']:.3g}"),
    ("shrink of the unbiased baselines (none, running, LOO, value)",
     " / ".join(f"{by_name[b]['shrink']:.2f}" for b in ("none", "running_mean", "leave_one_out", "value"))),
    (f"batch-mean shrink, n = {n} (theory {1 - 1 / n:.3f})", f"{by_name['batch_mean']['shrink']:.3f}"),
    ("running mean / value variance: levels differ, equal",
     f"{differ['running_mean'] / differ['value']:.2f}, {equal['running_mean'] / equal['value']:.2f}"),
    ("shrink: running mean (past only / current in), prompt mean",
     " / ".join(f"{row[2]:.3f}" for row in bias_rows)),
    ("levels equal: leave-one-out / running mean variance", f"{loo_run:.2f} ± {loo_run_se:.2f}"),
    (f"none variance: best offset → offset {offsets[-1]:+.0f}", f"x{var['none'][-1] / var['none'].min():.0f}"),
    ("value error |V − v|: detached, not detached", f"{late[True]:.3f}, {late[False]:.3f}"),
]
for claim, figure in summary:
    print(f"{claim:<62} {figure}")

# %% [markdown]
# | idea | where in the library |
# |---|---|
# | baselines, one interface for bandit, toy sequences, LLM | `baselines.py` |
# | bias, variance, shrink, SNR of an estimator | `variance.estimator_stats`, `compare_baselines` |
# | per-sample gradients (vmap over grad) | `per_sample.per_sample_grads`, `policy_gradient.per_sample_estimates` |
# | the explorer | `explorer.VarianceExplorer` |
#
# **What to try next**
# - Add `"prompt_mean": BatchMeanBaseline(per_prompt=True)` to `compare_baselines`: the mean of each
#   prompt's own $k$ samples. Predict its shrink before you run it (hint: $1 - 1/k$).
# - Rescale the batch-mean advantages by $n/(n-1)$ and check that the shrink returns to 1.
# - In the explorer, set $k = 2$: which wins, leave-one-out or the learned value? And at $k = 16$?
# - Give `RunningMeanBaseline` a decay of 0.5 or 0.99: what happens to its variance, and why is it still unbiased?
# - Lesson 04 finds the same "not detached" fault in the seed's KL term — in the policy gradient itself.
