# %% [markdown]
# # 04 · The KL penalty and the reference policy
#
# **What you will learn**
# - what **reward hacking** looks like when a flawed reward is optimised without restraint, and how a
#   KL penalty to a frozen **reference** policy prevents it;
# - the **reward–KL frontier**: the exact best trade-off for each $\beta$, in closed form, and where
#   REINFORCE lands;
# - the three sample estimators of the KL — $k_1$, $k_2$, $k_3$ — their bias and variance against the
#   **exact** KL, near and far from the reference;
# - KL **folded into the reward** (detached) versus KL **as a loss term**: which gradients are right;
# - the seed text's two faults, (a) the KL inside the advantage is not detached and (b) the batch mean
#   includes the sample itself, **measured** against the exact gradient of the KL-regularised objective;
# - what **one unlucky batch** does with and without gradient clipping, under Adam and under plain SGD —
#   the KL jump, the drop in reward and the recovery, exactly, over 5 seeds.
#
# Same toy policy as lesson 03, same loss `reinforce_loss`, one new idea: the reference.

# %% [markdown]
# ## 1. The objective and the reference
#
# RL fine-tuning maximises reward while staying close to the supervised model $\pi_{\text{ref}}$:
#
# $$J_\beta(\theta)=\mathbb E_{y\sim\pi_\theta}[r(x,y)]-\beta\,\mathrm{KL}\big(\pi_\theta(\cdot|x)\,\|\,\pi_{\text{ref}}(\cdot|x)\big),
#   \qquad \mathrm{KL}=\mathbb E_{y\sim\pi_\theta}\Big[\sum_t \log\frac{\pi_\theta(y_t|x,y_{<t})}{\pi_{\text{ref}}(y_t|x,y_{<t})}\Big].$$
#
# The reference is the policy at the start of RL, **frozen**: `reinforce_edu.core.kl.frozen_copy` (a deep copy,
# `eval()`, every parameter `requires_grad=False`). The reward here is a **flawed proxy**:
# `hackable_reward` = the match score (the gold reward, in $[0,1]$) **plus 0.25 for every `a`** in the
# completion — the toy version of a reward model that likes a phrase too much.

# %%
import copy
import math
import time

import matplotlib.pyplot as plt
import torch

from reinforce_edu.core.baselines import LeaveOneOutBaseline
from reinforce_edu.core.kl import exact_kl, frozen_copy, kl_estimate
from reinforce_edu.core.losses import reinforce_loss, seed_reinforce_loss
from reinforce_edu.core.significance import mean_se, mean_se_along
from reinforce_edu.toy.estimates import batch_estimates, sequence_scores, token_scores
from reinforce_edu.toy.rewards import hackable_reward, match_reward
from reinforce_edu.toy.enumeration import Enumeration
from reinforce_edu.toy.sequences import ToyPolicy, ToyTask, demonstrations, scaled_copy, warm_up
from reinforce_edu.toy.train import ToyTrainConfig, train_toy
from reinforce_edu.toy.outlier import OutlierReward
from reinforce_edu.core.variance import estimator_stats

torch.set_num_threads(1)  # tiny tensors: one thread is faster, and the same numbers everywhere
start = time.perf_counter()

task = ToyTask()
enum = Enumeration(task)
sft = ToyPolicy(task, hidden=16, seed=0)
warm_up(sft, demonstrations(task, 16, noise=0.2, seed=0), steps=60, lr=0.03)
ref = frozen_copy(sft)  # π_ref: frozen
gold, proxy = enum.rewards(match_reward), enum.rewards(hackable_reward)  # (P, N) each

def exact(policy, values):
    return float(enum.expectation(enum.seq_logprobs(policy), values))

metrics = {"gold": lambda p: exact(p, gold), "proxy": lambda p: exact(p, proxy), "KL": lambda p: float(enum.kl(p, ref))}

# %%
# NBVAL_CHECK_OUTPUT
with torch.no_grad():
    gold0, proxy0 = exact(sft, gold), exact(sft, proxy)
best = proxy.argmax(1)  # the proxy's favourite completion for each prompt
print(f"reference policy: E[gold] = {gold0:.2f}, E[proxy] = {proxy0:.2f}")
print("proxy's best completions:", [task.decode(enum.tokens[i]) for i in best.tolist()],
      f"worth {proxy.max(1).values.mean():.2f} (proxy) and {gold.gather(1, best[:, None]).mean():.2f} (gold)")
assert all(task.decode(enum.tokens[i]).count("a") >= 5 for i in best.tolist())

# %% [markdown]
# ## 2. Reward hacking without a KL penalty
#
# Two runs of `train_toy` from the reference (200 steps, 8 samples per prompt, leave-one-out, Adam),
# one with $\beta=0$ and one with $\beta=0.1$ (`kl_estimator="k1"`, `kl_placement="reward"`: the
# detached KL folded into the return, $R=r-\beta\sum_t k_{1,t}$). Gold reward, proxy and KL are exact.

# %%
cfg = ToyTrainConfig(steps=200, k=8, lr=0.02, eval_every=20)
runs, policies = {}, {}
for beta in (0.0, 0.1):
    policies[beta] = copy.deepcopy(sft)
    runs[beta] = train_toy(policies[beta], task, hackable_reward, cfg, ref=ref, metrics=metrics,
                           beta=beta, aggregation="sum")

fig, axes = plt.subplots(1, 3, figsize=(12, 3))
for beta, h in runs.items():
    for ax, m in zip(axes, ("proxy", "gold", "KL")):
        ax.plot(h["step"], h[m], label=f"beta = {beta}")
        ax.set_title(f"exact E[{m}]" if m != "KL" else "exact KL(pi || pi_ref)"); ax.set_xlabel("step")
axes[2].set_yscale("log"); axes[0].legend()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
for beta, h in runs.items():
    samples = policies[beta].sample(torch.arange(task.n_prompts), 2, generator=torch.Generator().manual_seed(0))
    print(f"beta = {beta}: proxy {h['proxy'][0]:.2f} -> {h['proxy'][-1]:.2f}, gold {h['gold'][0]:.2f} -> "
          f"{h['gold'][-1]:.2f}, KL {h['KL'][-1]:.1f};  samples: {[task.decode(t) for t in samples.tokens]}")
h0, h1 = runs[0.0], runs[0.1]
assert h0["proxy"][-1] > h0["proxy"][0] + 0.3 and h0["gold"][-1] < h0["gold"][0] - 0.3 and h0["KL"][-1] > 10
assert h1["gold"][-1] > h1["gold"][0] and h1["KL"][-1] < 1

# %% [markdown]
# Without the penalty the policy finds the proxy's flaw — `aaaaaa` — and the **gold** reward collapses
# while the proxy climbs; the policy ends tens of nats away from the reference. With $\beta=0.1$ it
# improves the gold reward instead: moving far enough to spam `a` costs more KL than the proxy pays.
#
# ## 3. The reward–KL frontier
#
# For each prompt, $J_\beta$ has an exact maximiser over all distributions on completions:
#
# $$\pi^*_\beta(y|x)=\frac{\pi_{\text{ref}}(y|x)\,e^{r(x,y)/\beta}}{Z_\beta(x)},\qquad
#   J_\beta(\pi^*_\beta)=\beta\log Z_\beta(x)\ \ge\ J_\beta(\pi)\ \text{for every }\pi.$$
#
# `Enumeration.kl_regularised_optimum` computes it over all 5461 completions. Sweeping $\beta$ traces the
# frontier of (KL, expected proxy reward) pairs that no policy can beat; we train REINFORCE at several
# $\beta$ and see where it lands.

# %%
frontier = []
for beta in torch.logspace(-2, 0.5, 30).tolist():
    log_star = enum.kl_regularised_optimum(ref, proxy, beta)  # (P, N)
    with torch.no_grad():
        lref = enum.seq_logprobs(ref)
    frontier.append((beta, float(enum.expectation(log_star, log_star - lref)),
                     float(enum.expectation(log_star, proxy)), float(enum.expectation(log_star, gold))))

for beta in (0.03, 0.3, 1.0):
    policies[beta] = copy.deepcopy(sft)
    runs[beta] = train_toy(policies[beta], task, hackable_reward, cfg, ref=ref, metrics=metrics,
                           beta=beta, aggregation="sum")
betas = sorted(b for b in runs if b > 0)

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot([f[1] for f in frontier], [f[2] for f in frontier], "-", color="k", label="exact frontier (pi*_beta)")
ax.plot([f[1] for f in frontier], [f[3] for f in frontier], ":", color="k", label="gold reward of pi*_beta")
for beta in sorted(runs):
    ax.plot(runs[beta]["KL"][-1], runs[beta]["proxy"][-1], "o", label=f"REINFORCE, beta = {beta}")
ax.set_xscale("symlog", linthresh=0.1); ax.set_xlabel("KL(pi || pi_ref)"); ax.set_ylabel("expected reward")
ax.legend(fontsize=7); plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'beta':>6}{'KL':>8}{'proxy':>8}{'gold':>8}{'J_beta':>9}{'J_beta(pi*)':>13}")
for beta in betas:
    h = runs[beta]
    j = h["proxy"][-1] - beta * h["KL"][-1]
    log_star = enum.kl_regularised_optimum(ref, proxy, beta)
    with torch.no_grad():
        lref = enum.seq_logprobs(ref)
    j_star = float(enum.expectation(log_star, proxy - beta * (log_star - lref)))
    print(f"{beta:>6}{h['KL'][-1]:>8.2f}{h['proxy'][-1]:>8.2f}{h['gold'][-1]:>8.2f}{j:>9.3f}{j_star:>13.3f}")
    assert j <= j_star + 1e-4  # nobody beats the exact optimum
g_small, g_mid = frontier[0][3], min(frontier, key=lambda f: abs(f[0] - 0.1))[3]
print(f"gold reward of the exact optimum: {g_small:.2f} at beta = {frontier[0][0]:.2f}, {g_mid:.2f} at beta = 0.1 "
      f"(reference: {gold0:.2f})")
assert g_small < gold0 - 0.2 and g_mid > gold0  # the optimum of a too-small beta is the hack
kls = [runs[b]["KL"][-1] for b in betas]
assert all(a > b for a, b in zip(kls, kls[1:]))  # larger beta, closer to the reference
assert runs[0.1]["gold"][-1] > max(runs[0.0]["gold"][-1], runs[1.0]["gold"][-1])  # both ends are worse
plateau = [runs[b]["gold"][-1] for b in (0.03, 0.1, 0.3)]
assert max(plateau) - min(plateau) < 0.01  # ... and between them gold is flat: a range, not a point

# %% [markdown]
# Larger $\beta$ keeps the policy closer to the reference. Every trained policy lies under the exact
# frontier, as it must, and at small $\beta$ REINFORCE gets within a few thousandths of the optimal
# $J_\beta$ (at $\beta=1$ it has not converged in 200 steps). A small $\beta$ is not safe: below about
# $0.02$ the exact optimum *is* the hack (the dotted line: the gold reward of $\pi^*_\beta$ collapses at
# large KL). A too large $\beta$ forbids improvement. The **gold** reward of the trained policies is flat,
# 0.94 for every $\beta$ from 0.03 to 0.3, and lower at both ends (0.90 at $\beta = 1$; the hack at
# $\beta = 0$): a range of good $\beta$, not a sharp sweet spot.
#
# ## 4. Three estimators of KL: $k_1$, $k_2$, $k_3$
#
# With only the log-probs of the sampled tokens, $\rho_t=\log\pi_{\text{ref}}(y_t|\cdot)-\log\pi_\theta(y_t|\cdot)$,
# `kl_estimate` gives per token
#
# $$k_1=-\rho_t,\qquad k_2=\tfrac12\rho_t^2,\qquad k_3=(e^{\rho_t}-1)-\rho_t .$$
#
# $k_1$ and $k_3$ are unbiased ($\mathbb E_\pi[e^{\rho}]=1$); $k_2$ is not. With full logits one can also
# sum the **exact per-token KL** of each visited prefix, $\sum_t\mathrm{KL}(\pi_\theta(\cdot|y_{<t})\|\pi_{\text{ref}}(\cdot|y_{<t}))$
# (`exact_kl`) — also unbiased for the sequence KL. We compare them on 1000 sampled completions
# (250 per prompt) from five policies, from very close to the reference to the hacked one.

# %%
est_policies = {
    "pi_ref at temperature 1.1": scaled_copy(ref, 1 / 1.1),
    "beta = 1": policies[1.0],
    "beta = 0.1": policies[0.1],
    "beta = 0.03": policies[0.03],
    "beta = 0 (hacked)": policies[0.0],
}
kl_rows = []
for name, pol in est_policies.items():
    with torch.no_grad():
        b = pol.sample(torch.arange(task.n_prompts), 250, generator=torch.Generator().manual_seed(1))
        logits, ref_logits = pol(b.prompt_ids, b.tokens), ref(b.prompt_ids, b.tokens)  # (B, T, V)
        lp = logits.log_softmax(-1).gather(-1, b.tokens[..., None]).squeeze(-1)  # (B, T)
        rlp = ref_logits.log_softmax(-1).gather(-1, b.tokens[..., None]).squeeze(-1)
        true_kl = float(enum.kl(pol, ref))
    per_seq = {e: (kl_estimate(lp, rlp, e) * b.mask).sum(1) for e in ("k1", "k2", "k3")}  # (B,) each
    per_seq["exact per token"] = (exact_kl(logits, ref_logits) * b.mask).sum(1)
    for e, v in per_seq.items():
        se = float(v.std()) / math.sqrt(v.numel())
        kl_rows.append(dict(policy=name, exact=true_kl, est=e, mean=float(v.mean()), std=float(v.std()),
                            z=(float(v.mean()) - true_kl) / se, neg=float((v < 0).float().mean())))

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'policy':<26}{'exact KL':>9}{'estimator':>17}{'mean':>9}{'std':>9}{'bias/SE':>9}{'P(<0)':>7}")
for r in kl_rows:
    print(f"{r['policy']:<26}{r['exact']:>9.3f}{r['est']:>17}{r['mean']:>9.3f}{r['std']:>9.3f}{r['z']:>9.1f}{r['neg']:>7.2f}")
row = {(r["policy"], r["est"]): r for r in kl_rows}
for name in est_policies:
    assert abs(row[name, "k1"]["z"]) < 4 and abs(row[name, "exact per token"]["z"]) < 4  # unbiased
assert row["pi_ref at temperature 1.1", "k3"]["std"] < row["pi_ref at temperature 1.1", "k1"]["std"] / 4
for name in ("beta = 0.1", "beta = 0.03", "beta = 0 (hacked)"):
    assert row[name, "k3"]["z"] < -4  # after RL: far too low, many "standard errors" off
assert row["beta = 0 (hacked)", "k2"]["z"] > 4 and row["beta = 0.1", "k2"]["z"] < -4  # biased, either way
assert row["pi_ref at temperature 1.1", "k1"]["neg"] > 0.2  # k1 is often negative

# %% [markdown]
# - $k_1$ is unbiased everywhere but noisy, and often **negative** for a single sample.
# - $k_3$ is the low-variance choice when the policy is **close** to the reference in every token
#   (first row: under a quarter of $k_1$'s standard deviation). After RL it fails: its unbiasedness rests
#   on $\mathbb E_\pi[\pi_{\text{ref}}/\pi_\theta]=1$, a mean carried by rare completions that the policy
#   has learned to avoid and the reference still likes. 1000 samples seldom contain one, so the sample
#   mean of $k_3$ falls **many standard errors** below the exact KL — the standard error computed from
#   those samples is itself fooled. Unbiased in theory, heavy-tailed in practice.
# - $k_2$ is biased: too low after RL, far too high for the hacked policy.
# - When both models' logits are at hand, the exact per-token KL is unbiased and needs no luck — but the
#   table shows it 3.1 standard errors low for $\beta = 1$. Twenty (policy, estimator) tests at once make a
#   3-SE deviation somewhere a few-percent event, so we decide it with fresh samples: 10 000 new completions
#   (ten seeds not used above) from the same policy.

# %%
# NBVAL_CHECK_OUTPUT
pol_b1 = est_policies["beta = 1"]
fresh = []
for s in range(2, 12):  # seed 1 drew the table's samples
    with torch.no_grad():
        b = pol_b1.sample(torch.arange(task.n_prompts), 250, generator=torch.Generator().manual_seed(s))
        fresh.append((exact_kl(pol_b1(b.prompt_ids, b.tokens), ref(b.prompt_ids, b.tokens)) * b.mask).sum(1))
fresh = torch.cat(fresh)  # (10 000,) exact per-token KL of each completion
kl_b1 = float(enum.kl(pol_b1, ref).detach())
fresh_se = float(fresh.std()) / math.sqrt(fresh.numel())
fresh_z = (float(fresh.mean()) - kl_b1) / fresh_se
print(f"beta = 1, exact per-token KL on {fresh.numel()} fresh samples: {float(fresh.mean()):.4f} ± {fresh_se:.4f} "
      f"against the exact {kl_b1:.4f} ({fresh_z:+.1f} SE)")
assert abs(fresh_z) < 2  # the -3.1 of the table was the luck of one seed: no bias is resolved

# %% [markdown]
# On fresh samples the deviation is gone (well within 2 SE): the table's $-3.1$ was the luck of seed 1, and
# the exact per-token KL shows no bias at a resolution of about 1.4 % of the KL.
#
# ## 5. KL in the reward, or KL in the loss?
#
# `reinforce_loss` offers two placements of the penalty:
# - `kl_placement="reward"`: $R=r-\beta\sum_t k_t$, **detached** — the KL acts as a negative reward, and
#   the score function carries it: $\hat g=(R-b)\nabla\log\pi_\theta(y)$. With $k_1$ this is unbiased for
#   $\nabla J_\beta$ (the derivation is in `reinforce_edu/core/losses.py`).
# - `kl_placement="loss"`: $L=L_{\text{PG}}+\beta\sum_t k_t$ differentiated directly (GRPO's choice, with $k_3$).
#
# With the reward set to zero and $\beta=1$, each variant's mean gradient should be $-\nabla\mathrm{KL}$.
# We measure it on a policy 20 steps into the $\beta=0$ run ($\mathrm{KL}\approx1.7$): 600 batches of
# 8 completions, against the exact $-\nabla\mathrm{KL}$ from the enumeration.

# %%
pol = copy.deepcopy(sft)  # 20 steps of the beta = 0 run: the same trajectory, stopped early
train_toy(pol, task, hackable_reward, ToyTrainConfig(steps=20, k=8, lr=0.02, eval_every=20), ref=ref,
          beta=0.0, aggregation="sum")
params = list(pol.parameters())

def flat_grad(value):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(value, params)])

minus_grad_kl = -flat_grad(enum.kl(pol, ref))
P, k, M = task.n_prompts, 2, 600
pool = pol.sample(torch.arange(P).repeat(M), k, generator=torch.Generator().manual_seed(2))
with torch.no_grad():
    pool_lp = pol.log_probs(pool.prompt_ids, pool.tokens)
    pool_ref = ref.log_probs(pool.prompt_ids, pool.tokens)
scores = token_scores(pol, pool.prompt_ids, pool.tokens, pool.mask)  # (M·B, T, D)
no_reward = torch.zeros(M * P * k)
placements = {
    "reward, k1": dict(kl_placement="reward", kl_estimator="k1", baseline=LeaveOneOutBaseline()),
    "reward, k3": dict(kl_placement="reward", kl_estimator="k3", baseline=LeaveOneOutBaseline()),
    "loss, k1": dict(kl_placement="loss", kl_estimator="k1"),
    "loss, k2": dict(kl_placement="loss", kl_estimator="k2"),
    "loss, k3": dict(kl_placement="loss", kl_estimator="k3"),
}
place_stats = {}
for name, kw in placements.items():
    def loss_fn(lp, rows, kw=kw):
        return reinforce_loss(lp, no_reward[rows], pool.mask[rows], ref_logp=pool_ref[rows], beta=1.0,
                              group_size=k, aggregation="sum", **kw).loss
    est = batch_estimates(loss_fn, pool_lp, scores, batch_size=P * k)  # (M, D)
    s = estimator_stats(est, minus_grad_kl)
    mean = est.mean(0)
    s["cosine"] = float(mean @ minus_grad_kl / (mean.norm() * minus_grad_kl.norm()))
    place_stats[name] = s

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'placement':<12}{'shrink':>16}{'cosine':>8}{'bias':>8}{'noise floor':>13}")
for name, s in place_stats.items():
    print(f"{name:<12}{s['shrink']:>9.2f} ± {s['shrink_se']:.2f}{s['cosine']:>8.2f}{s['bias_norm']:>8.2f}{s['noise_floor']:>13.2f}")
ok = place_stats["reward, k1"]
assert abs(ok["shrink"] - 1) < 4 * ok["shrink_se"] and ok["bias_norm"] < 1.5 * ok["noise_floor"]
for name in ("reward, k3", "loss, k1", "loss, k2", "loss, k3"):
    s = place_stats[name]
    assert s["bias_norm"] > 4 * s["noise_floor"] and abs(s["shrink"] - 1) > 4 * s["shrink_se"], name  # biased
assert abs(place_stats["loss, k1"]["shrink"]) < 4 * place_stats["loss, k1"]["shrink_se"]  # no signal at all

# %% [markdown]
# Only the detached $k_1$ in the reward follows $-\nabla\mathrm{KL}$ (shrink $\approx 1$, bias at the
# noise floor). The others are biased, for different reasons:
# - **loss, $k_1$**: $\nabla k_1=\nabla\log\pi_\theta(y_t)$, whose mean is zero — the term does nothing
#   on average.
# - **loss, $k_2$ / $k_3$**: differentiating the per-token estimate gives a per-token gradient
#   ($k_2$: of the forward KL at that prefix; $k_3$: of the *reverse* KL, $\mathbb E[\nabla k_3]=-\sum_v\pi_{\text{ref}}(v)\nabla\log\pi_\theta(v)$),
#   and misses that token $t$ also changes which prefixes — and so which KL — come later.
# - **reward, $k_3$**: the score-function identity needs $\log\pi_\theta-\log\pi_{\text{ref}}$; $k_3$ is a
#   different function of $\rho$, so its "reward" has the right mean but the wrong gradient.
#
# A KL loss term is not wrong as a regulariser, but it is not the gradient of $J_\beta$.
#
# ## 6. The seed's faults, corrected — and measured
#
# The seed text computes (on sequences)
#
# ```python
# kl = logp - logp_ref                 # (a) not detached
# returns = rewards - beta * kl
# baseline = returns.mean().detach()   # (b) includes the sample itself
# loss = -(logp * (returns - baseline)).mean()
# ```
#
# `seed_reinforce_loss` reproduces it line for line. Differentiating $-\log\pi_i\,(R_i-b)$ with $R_i$ still
# depending on $\theta$ adds $-\beta\log\pi_\theta(y_i)\nabla\log\pi_\theta(y_i)$ per sample, whose mean is
# $-\beta\,\mathbb E[\log\pi\,\nabla\log\pi]=\beta\nabla H(\pi_\theta)$: fault (a) is a hidden **entropy bonus**
# of weight $\beta$. Fault (b) scales the rest by $(1-1/n)$. The prediction for the seed's mean step:
#
# $$\mathbb E[\hat g_{\text{seed}}]=(1-\tfrac1n)\nabla J_\beta+\beta\nabla H(\pi_\theta).$$
#
# We test it on the same policy (20 steps into the $\beta=0$ run), with $\beta=0.3$, 2000 batches of
# $n=8$ (2 completions per prompt), all four combinations of the two fixes, against the exact
# $\nabla J_\beta$ and $\nabla H$ from the enumeration.

# %%
beta, M, n = 0.3, 2000, P * k
with torch.no_grad():
    kl_here = float(enum.kl(pol, ref))
grad_J = flat_grad(enum.objective(pol, proxy, ref=ref, beta=beta))  # exact ∇J_β
lp_all = enum.seq_logprobs(pol)
grad_H = flat_grad(enum.expectation(lp_all, -lp_all))  # exact ∇H(π)

pool = pol.sample(torch.arange(P).repeat(M), k, generator=torch.Generator().manual_seed(3))
with torch.no_grad():
    pool_lp = pol.log_probs(pool.prompt_ids, pool.tokens)
    pool_ref = ref.log_probs(pool.prompt_ids, pool.tokens)
r = hackable_reward(task, pool.prompt_ids, pool.tokens, pool.mask)
seq_scores = sequence_scores(pol, pool.prompt_ids, pool.tokens, pool.mask)  # (M·n, D)

variants = {
    "seed (a)+(b)": (dict(), (1 - 1 / n) * grad_J + beta * grad_H),
    "fix (a) only": (dict(detach_kl=True), (1 - 1 / n) * grad_J),
    "fix (b) only": (dict(leave_one_out=True), grad_J + beta * grad_H),
    "both fixed": (dict(detach_kl=True, leave_one_out=True), grad_J),
}
fault_stats, fault_est = {}, {}
for name, (kw, predicted) in variants.items():
    def loss_fn(lp, rows, kw=kw):
        return seed_reinforce_loss(lp, r[rows], pool_ref[rows], pool.mask[rows], beta=beta, **kw)
    fault_est[name] = batch_estimates(loss_fn, pool_lp, seq_scores, batch_size=n)  # (M, D)
    fault_stats[name] = (estimator_stats(fault_est[name], grad_J), estimator_stats(fault_est[name], predicted))

def ours(lp, rows):  # the corrected loss, per-prompt leave-one-out
    return reinforce_loss(lp, r[rows], pool.mask[rows], ref_logp=pool_ref[rows], beta=beta,
                          baseline=LeaveOneOutBaseline(), group_size=k, aggregation="sum").loss
fault_est["reinforce_loss"] = batch_estimates(ours, pool_lp, seq_scores, batch_size=n)
fault_stats["reinforce_loss"] = (estimator_stats(fault_est["reinforce_loss"], grad_J),) * 2

# %%
# NBVAL_CHECK_OUTPUT
print(f"KL(pi || pi_ref) = {kl_here:.2f};  |grad J_beta| = {grad_J.norm():.3f},  |beta grad H| = {beta * grad_H.norm():.3f}")
print(f"{'estimator':<16}{'bias vs exact':>14}{'bias vs predicted':>19}{'noise floor':>13}{'shrink':>15}")
for name, (vs_exact, vs_pred) in fault_stats.items():
    print(f"{name:<16}{vs_exact['bias_norm']:>14.3f}{vs_pred['bias_norm']:>19.3f}{vs_exact['noise_floor']:>13.3f}"
          f"{vs_exact['shrink']:>8.2f} ± {vs_exact['shrink_se']:.2f}")
ratio = (fault_est["fix (a) only"] * fault_est["both fixed"]).sum(1) / (fault_est["both fixed"] ** 2).sum(1)
print(f"per batch, fix (a) only / both fixed = {ratio.mean():.4f} (1 - 1/n = {1 - 1 / n:.4f}), spread {ratio.std():.1e}")
for name, (vs_exact, vs_pred) in fault_stats.items():
    assert vs_pred["bias_norm"] < 1.5 * vs_pred["noise_floor"], name  # the predicted mean, within noise
for name in ("seed (a)+(b)", "fix (b) only"):
    assert fault_stats[name][0]["bias_norm"] > 4 * fault_stats[name][0]["noise_floor"]  # fault (a): biased
s = fault_stats["reinforce_loss"][0]
assert s["bias_norm"] < 1.5 * s["noise_floor"] and abs(s["shrink"] - 1) < 4 * s["shrink_se"]
assert abs(float(ratio.mean()) - (1 - 1 / n)) < 1e-4 and float(ratio.std()) < 1e-4  # fault (b): exactly (1 - 1/n)

# %% [markdown]
# - Every variant's mean matches its prediction within noise, so the two faults are exactly what the
#   algebra says.
# - **Fault (a)** dominates: the hidden entropy bonus $\beta\nabla H$ is a sizeable fraction of the whole
#   true gradient (the norms printed above), and points elsewhere. The seed optimises $\mathbb E[r]-\beta\,\mathrm{KL}+\beta H$, not $J_\beta$.
# - **Fault (b)** is a pure shrink: each batch's estimate is *exactly* $(1-1/n)$ times the leave-one-out
#   one (the spread across batches is rounding error). With $n=8$ that is $12.5\%$ — small against the
#   noise here, but a bias that no number of batches removes.
# - `reinforce_loss` (detached KL, per-prompt leave-one-out) is unbiased for $\nabla J_\beta$.

# %% [markdown]
# ## 7. Gradient clipping and one unlucky batch
#
# The seed text: *"Gradient clipping (max norm 1.0) is essential to prevent instability"* — one unlucky batch
# could otherwise wreck the policy. Lesson 06 could not see it on the LLM (a few steps, one seed, every step
# clipped). The toy gives exact answers. We train on the gold reward (`match_reward`, in $[0,1]$) with
# `train_toy` ($k=8$, leave-one-out) and at step 5 pay **one** sample — the one with the lowest reward in that
# batch — a reward of 100 (`reinforce_edu/toy/outlier.py: OutlierReward` wraps the reward function; the trainer
# is untouched). Clipping at 1.0 or off; two optimisers: **Adam** (lr 0.01, what every trainer of this course
# uses) and **plain SGD** (lr 0.1, `ToyTrainConfig(optimizer="sgd")`). Exact $J$ (gold) and exact
# $\mathrm{KL}(\pi_\theta\|\pi_{\text{init}})$ after every step, 5 seeds; per seed a run without the outlier
# (clipping on) is the counterfactual, and all runs of a seed draw the same batches up to the outlier.
# Measured: the KL jump at the outlier's step (against a typical step's), the change of $J$ at that step, the
# steps until $J$ is back at its value before the outlier (21 = not within the run), and the final $J$ against
# the run without the outlier.

# %%
section_start = time.perf_counter()
ref_lp = enum.seq_logprobs(ref).detach()  # (P, N): log π_init(y|x)
last_kl = {}

def gold_and_kl(p):  # one pass over the prefix tree gives both: J (returned) and KL(π ‖ π_init) (kept)
    lp = enum.seq_logprobs(p)
    last_kl["value"] = float(enum.expectation(lp, lp - ref_lp))
    return float(enum.expectation(lp, gold))

step_metrics = {"gold": gold_and_kl, "KL": lambda p: last_kl["value"]}
AT, CLIP_STEPS, CLIP_SEEDS = 5, 25, 5
OPTIMISERS = {"adam": 0.01, "sgd": 0.1}
clip_runs = {}
for opt_name, lr in OPTIMISERS.items():
    for label, clip, outlier in (("no outlier", 1.0, False), ("clip 1.0", 1.0, True), ("no clip", 0.0, True)):
        cfgs = [ToyTrainConfig(steps=CLIP_STEPS, k=8, lr=lr, optimizer=opt_name, eval_every=1, seed=s,
                               max_grad_norm=clip) for s in range(CLIP_SEEDS)]
        clip_runs[opt_name, label] = [
            train_toy(copy.deepcopy(sft), task, OutlierReward(match_reward, at_call=AT) if outlier else match_reward,
                      c, metrics=step_metrics) for c in cfgs]
first = [sft.sample(torch.arange(P), 8, generator=torch.Generator().manual_seed(s)) for s in range(CLIP_SEEDS)]
norms = {}  # pre-clip gradient norm of a first batch, as drawn and with the outlier
for label in ("typical", "outlier"):
    norms[label] = []
    for b in first:
        fn = OutlierReward(match_reward, at_call=1) if label == "outlier" else match_reward
        sft.zero_grad()
        reinforce_loss(sft.log_probs(b.prompt_ids, b.tokens), fn(task, b.prompt_ids, b.tokens, b.mask), b.mask,
                       baseline=LeaveOneOutBaseline(), group_size=8).loss.backward()
        norms[label].append(float(torch.nn.utils.clip_grad_norm_(sft.parameters(), float("inf"))))
sft.zero_grad()
print(f"section 7: {time.perf_counter() - section_start:.1f} s")


def clip_measures(h, h_none):
    J, KL = h["gold"], h["KL"]  # index = step
    back = next((t - AT for t in range(AT, CLIP_STEPS + 1) if J[t] >= J[AT - 1]), CLIP_STEPS - AT + 1)
    return dict(kl_jump=KL[AT] - KL[AT - 1], j_change=J[AT] - J[AT - 1], recover=float(back),
                j_end=J[-1] - h_none["gold"][-1])

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for (opt_name, label), hs in clip_runs.items():
    c = torch.tensor([h["gold"] for h in hs], dtype=torch.float64)  # (seeds, steps + 1)
    mean, se = mean_se_along(c, 0)  # (steps + 1,) each: over seeds, sd / √seeds
    ax = axes[list(OPTIMISERS).index(opt_name)]
    ax.plot(hs[0]["step"], mean.tolist(), label=label)
    ax.fill_between(hs[0]["step"], (mean - se).tolist(), (mean + se).tolist(), alpha=0.25)
for ax, opt_name in zip(axes, OPTIMISERS):
    ax.axvline(AT, color="grey", ls=":", label="outlier batch")
    ax.set(xlabel="step", ylabel="J = E[gold] (exact)", title=f"{opt_name}: mean of {CLIP_SEEDS} seeds, band ± 1 SE")
    ax.legend(fontsize=8)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
clip_table = {}
for opt_name in OPTIMISERS:
    typical = mean_se([h["KL"][AT - 1] - h["KL"][AT - 2] for h in clip_runs[opt_name, "no outlier"]])
    for label in ("clip 1.0", "no clip"):
        per_seed = [clip_measures(h, hn) for h, hn in zip(clip_runs[opt_name, label], clip_runs[opt_name, "no outlier"])]
        clip_table[opt_name, label] = {key: mean_se([m[key] for m in per_seed])  # (mean, SE) over seeds
                                       for key in per_seed[0]} | {"typical": typical}
n_typ, n_out = (mean_se(norms[k]) for k in ("typical", "outlier"))
print(f"pre-clip gradient norm of a first batch: {n_typ[0]:.2f} ± {n_typ[1]:.2f} as drawn, "
      f"{n_out[0]:.0f} ± {n_out[1]:.0f} with the outlier")
print(f"{CLIP_SEEDS} seeds, mean ± SE")
print(f"{'':<15}{'typical KL step':>17}{'KL jump':>17}{'ΔJ at outlier':>17}{'steps to J':>12}{'J@25 − none':>17}")
for (opt_name, label), row in clip_table.items():
    cells = [row["typical"], row["kl_jump"], row["j_change"]]
    print(f"{opt_name + ', ' + label:<15}" + "".join(f"{m:>9.3f} ± {s:.3f}" for m, s in cells)
          + f"{row['recover'][0]:>6.1f} ± {row['recover'][1]:.1f}" + f"{row['j_end'][0]:>+10.3f} ± {row['j_end'][1]:.3f}")
sgd_off, sgd_on, adam_off, adam_on = (clip_table[k] for k in (("sgd", "no clip"), ("sgd", "clip 1.0"),
                                                              ("adam", "no clip"), ("adam", "clip 1.0")))
assert n_out[0] > 20 * n_typ[0] and n_typ[0] < 1.0  # clipping at 1.0 acts on the outlier batch only
assert sgd_off["kl_jump"][0] > 100 * sgd_off["typical"][0]  # SGD, no clip: the policy jumps (nats, not 0.01)
assert sgd_off["j_change"][0] + 4 * sgd_off["j_change"][1] < 0  # ... J drops, by more than 4 SE
assert sgd_off["recover"] == (CLIP_STEPS - AT + 1, 0.0)  # ... and no seed is back within the run
assert adam_off["j_end"][0] + 4 * adam_off["j_end"][1] < 0  # Adam, no clip: no jump, but a lasting loss of J
for row in (sgd_on, adam_on):  # with clipping: within 0.01 of the run that never saw the outlier
    assert abs(row["j_end"][0]) < 0.01

# %% [markdown]
# Three findings, each asserted above:
# - Clipping at 1.0 acts on the outlier batch **only**: a drawn batch's gradient norm is about 0.4, the
#   outlier's about 30. With clipping, both optimisers end within 0.01 of the run that never saw the outlier.
# - **SGD without clipping** is wrecked in one step: the KL to the start jumps by nats (a typical step moves it
#   by 0.007), $J$ falls by about a quarter, and no seed gets back to its earlier $J$ within the run.
# - **Adam without clipping** shows no jump at all — its step is normalised per coordinate, so the outlier
#   moves the policy *less* than a typical step. The damage comes later: the outlier's squared gradient
#   sits in Adam's second-moment estimate $v$ (decay $\beta_2=0.999$, a memory of ~1000 steps) and shrinks every
#   later step of the coordinates it touched, so learning stalls: $J$ after 25 steps is about 0.09 below
#   the run without the outlier, and seeds take a dozen steps on average to regain their earlier $J$.
#
# So the seed's claim holds on this task: one unlucky batch does lasting harm without clipping, and clipping
# at 1.0 prevents it. With Adam the harm is not the "destabilising update" the seed describes but a stalled
# optimiser. On the LLM of lesson 06 the raw gradient norm is in the tens on every step, so clipping at 1.0
# there is not insurance against rare batches but a rescaling of every step.

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

# %% nbgrader={"grade": false, "grade_id": "setup_04", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch

from reinforce_edu.teaching import exercises


# %% [markdown] nbgrader={"grade": false, "grade_id": "k3_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Exercise 9 — the k3 estimator of KL
#
# With $\rho_t = \log\pi_\text{ref}(y_t) - \log\pi_\theta(y_t)$, return $k_3 = (e^{\rho_t} - 1) - \rho_t$ per token,
# shape `(B, T)`.

# %% nbgrader={"grade": false, "grade_id": "k3", "locked": false, "schema_version": 3, "solution": true, "task": false}
def k3(logp, ref_logp):
    ### BEGIN SOLUTION
    rho = ref_logp - logp
    return torch.expm1(rho) - rho
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "k3_check", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
exercises.check_k3(k3)
### BEGIN HIDDEN TESTS
exercises.check_k3(k3, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "reinforce_loss_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Exercise 10 — the corrected `reinforce_loss`
#
# Fix the seed's function. Inputs: `logp`, `ref_logp`, `mask` `(B, T)`, `rewards` `(B,)`, `beta`, and `k` samples
# per prompt (rows prompt-major). Return the loss whose gradient is the REINFORCE estimate for the KL-regularised
# return: per sequence $R_i = r_i - \beta\sum_t m_{it}(\log\pi_\theta - \log\pi_\text{ref})$ (k1), **detached**;
# leave-one-out baseline within each group of k; advantages $A_i = R_i - b_i$; loss
# $-\frac1B\sum_i \sum_t m_{it} A_i \log\pi_\theta(y_{it})$ — summed over each completion's tokens, averaged over
# completions: the `sum` aggregation of lesson 03, the one without a length bias (not GRPO's per-sequence mean).
# The check compares the gradient too.

# %% nbgrader={"grade": false, "grade_id": "reinforce_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def reinforce_loss(logp, ref_logp, rewards, mask, beta, k):
    ### BEGIN SOLUTION
    kl = ((logp - ref_logp) * mask).sum(dim=1)  # (B,) k1 per sequence
    returns = (rewards - beta * kl).detach()  # fault (a) fixed: no gradient through the KL in the return
    grouped = returns.view(-1, k)  # (P, k)
    baseline = ((grouped.sum(dim=1, keepdim=True) - grouped) / (k - 1)).reshape(-1)  # fault (b) fixed: RLOO
    adv = (returns - baseline)[:, None]  # (B, 1)
    per_sequence = -(adv * logp * mask).sum(dim=1)  # (B,) summed over tokens: no 1/|y_i|
    return per_sequence.mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "reinforce_loss_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
exercises.check_reinforce_loss(reinforce_loss)
### BEGIN HIDDEN TESTS
exercises.check_reinforce_loss(reinforce_loss, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# | question | measured here |
# |---|---|
# | no KL penalty | the proxy is hacked (`aaaaaa`): gold reward falls, KL grows to tens of nats |
# | reward–KL frontier | larger $\beta$, smaller KL; all trained policies under the exact frontier; gold flat (0.94) for $\beta$ 0.03–0.3, lower at 0 and 1 |
# | $k_1$ / $k_2$ / $k_3$ | $k_1$ unbiased, noisy, often $<0$; $k_3$ low-variance only near the reference, heavy-tailed after RL; $k_2$ biased |
# | KL placement | only the detached $k_1$ in the reward gives $\nabla\mathrm{KL}$; in the loss, $k_1$ does nothing, $k_2$/$k_3$ are biased |
# | seed fault (a) | an extra entropy bonus $\beta\nabla H$: a bias far above the noise floor |
# | seed fault (b) | every batch's estimate is exactly $(1-1/n)$ too short |
# | one outlier batch (reward 100), 5 seeds | clipping at 1.0 acts on it alone and prevents the damage; without it SGD jumps by nats of KL and loses a quarter of $J$, Adam does not jump but stalls ($J$ 0.09 lower after 25 steps) |
#
# **What to try next**
# - Set `pay=1.0` in `hackable_reward`: which $\beta$ now stops the hack?
# - Train with `kl_placement="loss", kl_estimator="k3"` (GRPO's choice) at $\beta=0.1$ and compare the
#   final KL with the reward placement.
# - Train with `seed_reinforce_loss` and compare the entropy of the result with `reinforce_loss`'s.
# - Lesson 05 replaces the hand-written proxy by a learned reward model.
