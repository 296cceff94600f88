# %% [markdown]
# # 03 · Credit assignment over tokens
#
# **What you will learn**
# - an LLM in miniature: a tiny autoregressive policy over `a b c d .` whose every quantity — the
#   objective, its gradient, the KL — can be computed **exactly** by enumerating all 5461 completions;
# - **sequence-level** credit (every token gets the whole return) versus **token-level** credit
#   (each token gets the reward still to come, $G_t=\sum_{s\ge t}\gamma^{s-t}r_s$): the gradient variance
#   measured *position by position*, and why reward-to-go needs a baseline of its own;
# - how fast each kind of credit learns a **delayed** reward that depends on the first token, and what a
#   discount $\gamma<1$ does to it;
# - how the four ways of **averaging token losses** (sum, per-sequence mean as in GRPO, token mean as in
#   DAPO, a constant as in Dr. GRPO) push completions to be **longer or shorter** — measured;
# - whether token-level credit helps **long** sequences ($T=32$, a reward revealed in blocks): the variance,
#   with learned and leave-one-out baselines, and the learning speed over seeds;
# - whether "concentrated distributions lower the variance", as the seed text claims — sharpening the policy
#   at a fixed gradient scale, and measuring the signal-to-noise ratio, not only the variance.
#
# Lessons 01–02 were bandits: one action, $T=1$. Here an action is a sequence of tokens. The loss is the
# same function, `reinforce_edu.core.losses.reinforce_loss`, with the bandit as its case $T=1$.

# %% [markdown]
# ## 1. The toy task: a policy you can enumerate
#
# Prompt $x\in\{0,1,2,3\}$ asks for a target completion (`ab.`, `cdc.`, `bdab.`, `dca.`). The policy is a
# GRU over the previous token, started from a prompt embedding (`reinforce_edu/toy/sequences.py`). A GRU
# (gated recurrent unit) is a small recurrent network: it carries a hidden state $h_t$ from token to token,
# and learned gates decide how much of $h_{t-1}$ to keep and how much to overwrite with the new token — an LLM
# in miniature, whose next-token distribution depends on the whole prefix:
#
# $$\pi_\theta(y|x)=\prod_{t}\pi_\theta(y_t\mid x,y_{<t}),\qquad
#   \log\pi_\theta(y|x)=\sum_t m_t\log\pi_\theta(y_t\mid x,y_{<t}),$$
#
# with the **mask** $m_t=1$ up to and including EOS, $0$ after. With at most $T=6$ tokens there are
# $\sum_{L<6}4^L+4^6=5461$ completions per prompt, so `Enumeration` computes
# $J(\theta)=\frac1P\sum_x\sum_y\pi_\theta(y|x)\,r(x,y)$ exactly, and autograd gives $\nabla J$ exactly.
#
# Like an LLM after supervised fine-tuning, the policy first imitates noisy demonstrations
# (`warm_up`, cross-entropy, a few seconds); RL starts from there.

# %%
import copy
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from reinforce_edu.core.baselines import LeaveOneOutBaseline
from reinforce_edu.core.credit import aggregation_weights, completion_mask, reward_to_go
from reinforce_edu.core.losses import reinforce_loss
from reinforce_edu.core.significance import mean_se_along
from reinforce_edu.toy.estimates import batch_estimates, position_variance, sequence_scores, token_scores
from reinforce_edu.toy.long_task import (block_rewards, credit_gradients, grouped_total_variance, long_task, mean_se,
                                         sampled_objective, warm_policy)
from reinforce_edu.toy.rewards import delayed_rewards, first_token_reward, match_reward, match_token_rewards
from reinforce_edu.toy.enumeration import Enumeration
from reinforce_edu.toy.sequences import ToyPolicy, ToyTask, demonstrations, sharpened_copy, warm_up
from reinforce_edu.toy.train import ToyTrainConfig, train_toy
from reinforce_edu.toy.value import fit_value, predict_value, prefix_features

torch.set_num_threads(1)  # tiny tensors: one thread is faster, and the same numbers everywhere
start = time.perf_counter()

task = ToyTask()
enum = Enumeration(task)
sft = ToyPolicy(task, hidden=16, seed=0)
gold = enum.rewards(match_reward)  # (P, N): r(x, y) for every prompt and completion
with torch.no_grad():
    before = float(enum.expectation(enum.seq_logprobs(sft), gold))
sft_losses = warm_up(sft, demonstrations(task, 16, noise=0.6, seed=0), steps=60, lr=0.03)
with torch.no_grad():
    after = float(enum.expectation(enum.seq_logprobs(sft), gold))
    samples = sft.sample(torch.arange(task.n_prompts), 3, generator=torch.Generator().manual_seed(0))
for x, row in zip(samples.prompt_ids.tolist(), samples.tokens):
    print(f"prompt {x} (target {task.targets[x]}.): {task.decode(row)}")

# %%
# NBVAL_CHECK_OUTPUT
print("completions per prompt:", enum.shape[1])
print(f"exact E[match reward]: random policy {before:.2f} -> after warm-up {after:.2f}")
print(f"warm-up cross-entropy: {sft_losses[0]:.2f} -> {sft_losses[-1]:.2f}")
assert enum.shape[1] == 5461 and after > before + 0.3

# %% [markdown]
# ## 2. Token-level credit: reward-to-go, and the variance at each position
#
# For a completion with per-token rewards $r_t$ (here the dense reward $r_t=\mathbb 1[y_t=s_t]/|s|$,
# `match_token_rewards`), the REINFORCE estimate is a sum over positions:
#
# $$\hat g=\sum_t A_t\,\nabla_\theta\log\pi_\theta(y_t\mid x,y_{<t}),\qquad
#   A_t=\begin{cases}R-b & \text{sequence-level: the whole return } R=\sum_s r_s\\
#   G_t-b_t & \text{token-level: the reward to go } G_t=\sum_{s\ge t} r_s\end{cases}$$
#
# Both are unbiased: token $t$ cannot change the rewards paid before it, so the dropped part
# $\sum_{s<t}r_s$ multiplies a score of mean zero. Dropping it removes noise — **if** the baseline
# matches. `reinforce_loss(..., credit="token")` subtracts from $G_t$ either the sequence baseline $b$
# (`token_baseline="sequence"`) or a baseline of $G_t$ itself, leave-one-out at each position
# (`token_baseline="position"`).
#
# We take 500 completions per prompt, compute every per-token score $s_{it}=\nabla_\theta\log\pi_\theta(y_{it}|\cdot)$
# with `torch.func` (`token_scores`), and measure per position the total variance
# $\operatorname{tr}\operatorname{Cov}_i(A_{it}s_{it})$ of one sample's contribution.

# %%
P, k = task.n_prompts, 500
pool = sft.sample(torch.arange(P), k, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    pool_logp = sft.log_probs(pool.prompt_ids, pool.tokens)  # (B, T)
dense = match_token_rewards(task, pool.prompt_ids, pool.tokens, pool.mask)  # (B, T)
scores = token_scores(sft, pool.prompt_ids, pool.tokens, pool.mask)  # (B, T, D)

variants = {
    "sequence, no baseline": dict(credit="sequence", baseline=None),
    "token, no baseline": dict(credit="token", baseline=None),
    "sequence, leave-one-out": dict(credit="sequence", baseline=LeaveOneOutBaseline()),
    "token, sequence baseline": dict(credit="token", baseline=LeaveOneOutBaseline()),
    "token, position baseline": dict(credit="token", baseline=LeaveOneOutBaseline(), token_baseline="position"),
}
pos_var = {}
for name, kw in variants.items():
    out = reinforce_loss(pool_logp, dense, pool.mask, group_size=k, **kw)
    pos_var[name] = position_variance(out.advantages[..., None] * scores)  # (T,)

fig, ax = plt.subplots(figsize=(6.5, 3.2))
for name, v in pos_var.items():
    ax.plot(range(1, task.max_len + 1), v.tolist(), "o-", label=name)
ax.set_xlabel("token position t"); ax.set_ylabel("tr Cov of one sample's term"); ax.set_yscale("symlog", linthresh=0.01)
ax.set_title("gradient variance per position (dense reward)"); ax.legend(fontsize=7)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'credit':<26}" + "".join(f"{'t=' + str(t + 1):>8}" for t in range(task.max_len)) + f"{'total':>8}")
for name, v in pos_var.items():
    print(f"{name:<26}" + "".join(f"{x:8.2f}" for x in v.tolist()) + f"{float(v.sum()):8.2f}")
seq0, tok0 = pos_var["sequence, no baseline"], pos_var["token, no baseline"]
seq, tok_seqb, tok_pos = (pos_var[n] for n in list(variants)[2:])
late = seq > 1e-3  # positions that completions still reach
late[0] = False
assert torch.allclose(seq[0], tok_pos[0]) and torch.allclose(seq0[0], tok0[0])  # t = 1: G_1 = R
assert (tok0[late] < seq0[late]).all()  # reward-to-go, no baseline: lower at every later position
assert (tok_pos[late] < seq[late]).all()  # with a baseline of G_t: lower at every later position
assert tok_seqb.sum() > seq.sum()  # the pitfall: G_t minus a baseline of R is off-centre

# %% [markdown]
# Three readings:
# - **Without a baseline**, reward-to-go lowers the variance at every position after the first — the
#   classic result (Spinning Up's `2_rtg_pg.py`). At $t=1$ the two coincide: $G_1=R$.
# - **With a baseline**, token-level credit helps only if the baseline tracks $G_t$. Subtracting the
#   baseline of the *whole* return from $G_t$ — which shrinks as $t$ grows — leaves late advantages
#   off-centre, and the variance is *higher* than plain sequence credit. This is why token-level credit
#   in PPO comes with a learned value $V(x,y_{<t})$, and why GRPO/RLOO, which have no critic, use
#   sequence-level credit.
# - A leave-one-out baseline computed **per position** is a critic-free middle ground and gives the
#   lowest variance here.

# %% [markdown]
# ## 3. A delayed reward: learning speed
#
# `delayed_rewards`: the tokens from the second on earn the dense reward when written, but whether the
# **first** token was right ($y_1=s_1$, the "key") is paid only at the **end** of the completion — the
# shape of a chain-of-thought answer checked at the end. Four learners, each 3 seeds × 80 steps of
# `train_toy` (8 samples per prompt, leave-one-out, Adam):
#
# | learner | advantage of token $t$ | credit reaching $y_1$ for a bonus paid at $t=L$ |
# |---|---|---|
# | sequence | $R-b$ | full |
# | token, $\gamma=1$ | $G_t-b_t$ | full |
# | token, $\gamma=0.5$ | $\sum_{s\ge t}0.5^{s-t}r_s-b_t$ | $0.5^{L-1}$ of it |
# | token, $\gamma=0$ | $r_t-b_t$ (immediate reward only) | none |

# %%
key_r = enum.rewards(first_token_reward)  # (P, N): 1 if y_1 is the key
lengths = enum.lengths.expand(enum.shape)  # (P, N)
metrics = {
    "key": lambda p: enum.expectation(enum.seq_logprobs(p), key_r),
    "match": lambda p: enum.expectation(enum.seq_logprobs(p), gold),
    "length": lambda p: enum.expectation(enum.seq_logprobs(p), lengths),
}
learners = {
    "sequence": dict(credit="sequence"),
    "token, gamma=1": dict(credit="token", gamma=1.0, token_baseline="position"),
    "token, gamma=0.5": dict(credit="token", gamma=0.5, token_baseline="position"),
    "token, gamma=0": dict(credit="token", gamma=0.0, token_baseline="position"),
}
cfg = ToyTrainConfig(steps=80, k=8, lr=0.003, eval_every=10)
runs = {}
for name, kw in learners.items():
    runs[name] = [train_toy(copy.deepcopy(sft), task, delayed_rewards, ToyTrainConfig(**{**cfg.__dict__, "seed": s}),
                            metrics=metrics, aggregation="sum", **kw) for s in range(3)]

def seed_mean(name, metric):
    return torch.tensor([h[metric] for h in runs[name]]).mean(0)  # (evaluations,)

steps = runs["sequence"][0]["step"]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for name in learners:
    axes[0].plot(steps, seed_mean(name, "key").tolist(), label=name)
    axes[1].plot(steps, seed_mean(name, "match").tolist(), label=name)
axes[0].set_title("P(first token = key), exact"); axes[1].set_title("E[match reward], exact")
axes[0].set_ylabel("P(y_1 = key)"); axes[1].set_ylabel("expected match reward")
for ax in axes:
    ax.set_xlabel("step"); ax.legend(fontsize=7)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'learner':<18}{'key@20':>8}{'key@80':>8}{'match@80':>10}{'length@80':>11}")
final = {}
for name in learners:
    key, match, length = (seed_mean(name, m) for m in ("key", "match", "length"))
    final[name] = dict(key20=float(key[2]), key=float(key[-1]), match=float(match[-1]), length=float(length[-1]))
    print(f"{name:<18}{key[2]:8.2f}{key[-1]:8.2f}{match[-1]:10.2f}{length[-1]:11.2f}")
key0 = float(seed_mean("sequence", "key")[0])
match0 = float(seed_mean("sequence", "match")[0])
print(f"at the start: key accuracy {key0:.2f}, match reward {match0:.2f}")
assert final["sequence"]["key"] > 0.9 and final["token, gamma=1"]["key"] > 0.9
assert abs(final["sequence"]["key20"] - final["token, gamma=1"]["key20"]) < 0.05  # same speed
assert final["token, gamma=0"]["key"] < key0  # never credited: the key is not learned
assert final["token, gamma=0"]["match"] < match0  # ... and the match reward with it
assert final["token, gamma=0.5"]["key20"] < final["token, gamma=1"]["key20"]  # slower

# %% [markdown]
# - A terminal bonus reaches the first token **in full** under sequence credit and under reward-to-go
#   with $\gamma=1$; both learn the key at the same speed.
# - With $\gamma=0$ ("each token is judged by its own reward") the first token never sees the bonus:
#   the key is **not** learned. Its probability even falls *below* where it started (key@80 against the
#   start in the table): the dense rewards of tokens 2… train the GRU, embeddings and output layer that
#   $y_1$ shares with them, and nothing credits $y_1$ for the key, so it drifts wherever those updates take
#   it. The match reward ends below its start as well (the start line against match@80): the first token
#   is one of the matched ones, and its drift outweighs whatever the later tokens, trained on their own
#   rewards, gained in 80 steps. A discount that cuts the first token off from the bonus makes $\gamma=0$
#   worse than not training at all, on this task.
# - $\gamma=0.5$ learns the key more slowly: a bonus paid $L-1$ tokens later is worth $0.5^{L-1}$ to the
#   first token. (A discount also changes *what* is optimal: the bonus is worth more in a shorter
#   completion — compare the lengths.) For LLMs the usual choice is $\gamma=1$.

# %% [markdown]
# ## 4. Long sequences: $T=32$, a reward revealed in blocks
#
# The seed text says token-level credit "helps long sequences". Sections 2–3 had $T\le 6$. Here a task
# with $T=32$ (`reinforce_edu/toy/long_task.py`): four prompts, each asking for a random 31-token string
# (then EOS). The match reward of section 2 is **partial and delayed**: the matches of each block of 8
# tokens are paid together at the block's last token (`block_rewards`), so the return $R$ is the same
# match fraction, revealed four times per completion. Token $t$'s reward-to-go $G_t$ drops the blocks paid
# before it; sequence credit gives every token the whole $R$.
#
# At $4^{32}$ completions nothing is enumerated: $J$ and the variance are **sampled**, each with its standard
# error. The policy starts from a short SFT on noisy demonstrations (`warm_policy`). Per-sample gradients
# $g_i=\sum_t A_{it}\nabla_\theta\log\pi_\theta(y_{it}|\cdot)$ come from one `vmap` (`credit_gradients`), for
# 4 × 128 completions in groups of $k=8$; $\operatorname{tr}\operatorname{Cov}(g_i)$ and its SE are taken over
# the 64 groups (`grouped_total_variance`: samples sharing a leave-one-out baseline are not independent).
#
# Two baselines are **learned**, not exact (`reinforce_edu/toy/value.py`): a critic
# $V(x,y_{<t})=w\cdot[h_t,\mathrm{onehot}(t)]$ on the GRU state $h_t$ the policy reads $y_t$ from, fitted by
# ridge regression to $G_t$ on a **separate** pool of 4 × 64 completions (so it does not depend on the sample
# it is subtracted from); its value at $t=1$ is a value of the prompt, $V(x)$, since $G_1=R$. And a global
# mean of $R$ over that pool: what a running-mean baseline settles to.

# %%
section_start = time.perf_counter()
long = long_task(32)
long_sft = warm_policy(long)  # 20 SFT steps on noisy demonstrations
J_start, J_start_se = sampled_objective(long_sft, 256, seed=1)
K_LONG = 8
pool32 = long_sft.sample(torch.arange(long.n_prompts), 16 * K_LONG, generator=torch.Generator().manual_seed(4))
fit32 = long_sft.sample(torch.arange(long.n_prompts), 64, generator=torch.Generator().manual_seed(5))
r32 = block_rewards(long, pool32.prompt_ids, pool32.tokens, pool32.mask)  # (B, T), B = 512
r_fit = block_rewards(long, fit32.prompt_ids, fit32.tokens, fit32.mask)  # (256, T)
w_value = fit_value(prefix_features(long_sft, fit32.prompt_ids, fit32.tokens), reward_to_go(r_fit, fit32.mask),
                    fit32.mask)  # the critic, fitted on the separate pool
V32 = predict_value(prefix_features(long_sft, pool32.prompt_ids, pool32.tokens), w_value, pool32.mask)  # (B, T)
R32, G32, m32 = r32.sum(1, keepdim=True), reward_to_go(r32, pool32.mask), pool32.mask  # (B, 1), (B, T), (B, T)
global_mean = float(r_fit.sum(1).mean())  # a running mean's limit: one number for every prompt


def loo_advantages(**kw):  # (B, T) advantages of reinforce_loss, leave-one-out within groups of K_LONG
    return reinforce_loss(torch.zeros_like(r32), r32, m32, group_size=K_LONG,
                          baseline=LeaveOneOutBaseline(), **kw).advantages


long_variants = {
    "sequence, none": R32 * m32,
    "sequence, global mean": (R32 - global_mean) * m32,
    "sequence, leave-one-out": loo_advantages(credit="sequence"),
    "sequence, learned V(x)": (R32 - V32[:, :1]) * m32,
    "token, sequence LOO": loo_advantages(credit="token"),
    "token, position LOO": loo_advantages(credit="token", token_baseline="position"),
    "token, learned V(x, y<t)": (G32 - V32) * m32,
}
long_var = {name: grouped_total_variance(credit_gradients(long_sft, pool32.prompt_ids, pool32.tokens, m32, a),
                                         K_LONG)[0] for name, a in long_variants.items()}  # (64,) group means
ref_var = long_var["sequence, leave-one-out"].mean()
long_rel = {name: mean_se((v - long_var["sequence, leave-one-out"]) / ref_var) for name, v in long_var.items()}
print(f"section 4, variance part: {time.perf_counter() - section_start:.1f} s")

# %%
# NBVAL_CHECK_OUTPUT
print(f"T = {long.max_len}, blocks of 8; start: J = {J_start:.3f} ± {J_start_se:.3f} (sampled)")
print(f"{'credit, baseline':<26}{'tr Cov(g_i)':>18}{'vs sequence LOO (paired)':>28}")
for name, v in long_var.items():
    mean, se = mean_se(v)
    rel, rel_se = long_rel[name]
    print(f"{name:<26}{mean:>11.2f} ± {se:.2f}{rel:>+18.2f} ± {rel_se:.2f}")
z = {name: rel / se if se > 0 else 0.0 for name, (rel, se) in long_rel.items()}
assert z["token, position LOO"] < -4 and z["token, learned V(x, y<t)"] < -4  # token credit + a baseline of G_t: lower
assert z["sequence, none"] > 4  # no baseline: far higher
assert z["token, sequence LOO"] > 2.5  # the pitfall of section 2: G_t minus a baseline of R, higher
for name in ("sequence, global mean", "sequence, learned V(x)"):  # vs LOO: the factor 1 + 1/(k−1) of LOO
    rel, se = long_rel[name]
    assert abs(rel + 1 / K_LONG) < 3 * se, name  # (V − LOO)/LOO = −1/k, within 3 SE

# %% [markdown]
# Reading the table: with a baseline of $G_t$ — leave-one-out per position, or the learned critic — token
# credit cuts the variance of the long task by about a third to a half against sequence credit with
# leave-one-out; with the baseline of $R$ it *raises* it (the pitfall of section 2, again). On the sequence
# side the two learned baselines, the prompt's value $V(x)$ and the **global** mean, both beat leave-one-out
# by the factor $1+\frac1{k-1}$ that a baseline made of $k-1$ other samples pays for its own noise
# ($-1/k=-0.125$ relative): these four prompts sit at the same reward level, the case where lesson 02 found a
# global baseline as good as a per-prompt one.
#
# **Does lower variance learn faster?** Three learners, `train_toy` from the same warm policy (8 samples per
# prompt, leave-one-out, Adam lr 0.01, clip 1.0), 10 seeds × 80 steps; $J$ sampled (256 completions per
# prompt) every 10 steps; seed $s$ draws the same first batch for every learner, so differences are paired.
# The runs take about 2 minutes of CPU here, too long for a lesson: `scripts/long_credit.py` made them and
# stored `data/results/long_credit.json`, read below.

# %%
long_run = json.loads(Path("../data/results/long_credit.json").read_text())
steps32 = long_run["steps"]
curves32 = {name: torch.tensor(c, dtype=torch.float64) for name, c in long_run["J"].items()}  # (seeds, evals)
fig, ax = plt.subplots(figsize=(6.5, 3.2))
for name, c in curves32.items():
    mean, se = mean_se_along(c, 0)  # (evals,) each: over seeds, sd / √seeds
    ax.plot(steps32, mean.tolist(), "o-", ms=3, label=name)
    ax.fill_between(steps32, (mean - se).tolist(), (mean + se).tolist(), alpha=0.25)
ax.set(xlabel="step", ylabel="J = E[match reward] (sampled)",
       title=f"T = 32, block rewards: mean of {curves32['sequence'].shape[0]} seeds, band ± 1 SE")
ax.legend(fontsize=8)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
i20, i80 = steps32.index(20), steps32.index(80)
LEVEL = 0.31  # "steps to reach": the first evaluation with J ≥ LEVEL (every 10 steps; 90 if never)
reach = {name: torch.tensor([next((st for st, j in zip(steps32, row) if j >= LEVEL), 90) for row in c.tolist()],
                            dtype=torch.float64) for name, c in curves32.items()}  # (seeds,)
print(f"{long_run['settings']['seeds']} seeds, mean ± SE; Δ = paired difference to sequence credit")
print(f"{'learner':<26}{'J at step 20':>16}{'J at step 80':>16}{'Δ at 20':>17}{'Δ at 80':>17}"
      f"{'steps to ' + str(LEVEL):>16}{'Δ steps':>14}")
speed = {}
for name, c in curves32.items():
    d = c - curves32["sequence"]  # (seeds, evals) paired by seed
    speed[name] = [mean_se(c[:, i]) for i in (i20, i80)] + [mean_se(d[:, i]) for i in (i20, i80)] + [
        mean_se(reach[name]), mean_se(reach[name] - reach["sequence"])]
    print(f"{name:<26}" + "".join(f"{m:>9.3f} ± {s:.3f}" for m, s in speed[name][:4])
          + "".join(f"{m:>8.0f} ± {s:.0f}" for m, s in speed[name][4:]))
pos, tok_r = speed["token, position baseline"], speed["token, sequence baseline"]
assert abs(pos[2][0]) < 3 * pos[2][1] and abs(pos[5][0]) < 3 * pos[5][1]  # early speed: no resolved difference
assert 0 < pos[3][0] < 0.01  # after 80 steps: ahead by less than 0.01 (about 3 SE: small, barely resolved)
assert tok_r[3][0] + 3 * tok_r[3][1] < 0 and tok_r[5][0] > 3 * tok_r[5][1]  # baseline of R: slower, resolved

# %% [markdown]
# **What is found.** Token-level credit with a baseline of $G_t$ lowers the variance on the long task by about a
# third, but in 10 seeds × 80 steps it does **not** learn measurably faster: the difference in $J$ at step 20
# and in the steps to reach $J = 0.31$ is within noise, and after 80 steps it is ahead by about 0.005 — roughly
# 3 SE, a small effect at the edge of resolution. Token-level credit with the baseline of $R$ — higher
# variance — is **slower**, and that is resolved. So the seed's "token-level credit helps long sequences" holds
# for the variance, given the right baseline; for learning speed it is not resolved at this budget, and any
# gain is small. Why so little? Both learners reach the same plateau set by the policy's capacity (a GRU of 16
# units memorising four random 31-token strings), and Adam normalises the step, so a third less variance buys
# little speed.

# %% [markdown]
# ## 5. Aggregation modes: sum, per-sequence mean, token mean, constant — and output length
#
# After credit comes the sum over tokens and sequences, $L=\sum_{i,t}w_{it}\,(-A_{it}\log\pi_\theta(y_{it}))$
# (`reinforce_edu/core/credit.py`, `aggregation=`):
#
# | mode | $w_{it}$ | used by |
# |---|---|---|
# | `sum` | $m_{it}/B$ | the policy-gradient theorem (and the seed) |
# | `seq_mean` | $m_{it}/(B\,|y_i|)$ | GRPO |
# | `token_mean` | $m_{it}/\sum_j|y_j|$ | DAPO |
# | `constant` | $m_{it}/(B\,T)$ | Dr. GRPO |
#
# The three methods named in the table are REINFORCE variants for LLMs with a group of $k$ samples per
# prompt and no critic. **GRPO** (Group Relative Policy Optimization; Shao et al. 2024, DeepSeekMath) scales
# each sample's advantage by its group's reward standard deviation and averages each sequence's token losses
# before averaging over sequences. **DAPO** (Decoupled Clip and Dynamic sAmpling Policy Optimization; Yu et
# al. 2025) instead averages over all tokens of the batch, so every token weighs the same. **Dr. GRPO**
# ("GRPO done right"; Liu et al. 2025) drops the standard-deviation scaling and divides by a constant, so no
# completion's length changes its weight. The measurement below shows what each does to length.
#
# Only `sum` and `constant` weight every sequence by its probability alone; `seq_mean` divides a
# sequence's whole gradient by its length. The weight each **sequence** gets, for lengths 1…6 in one batch:

# %%
# NBVAL_CHECK_OUTPUT
demo_mask = torch.tril(torch.ones(6, 6))  # 6 sequences of lengths 1..6
print(f"{'mode':<12}" + "".join(f"{'|y|=' + str(L):>8}" for L in range(1, 7)))
for mode in ("sum", "seq_mean", "token_mean", "constant"):
    w = aggregation_weights(demo_mask, mode).sum(1)  # total weight of each sequence
    print(f"{mode:<12}" + "".join(f"{x:8.3f}" for x in w.tolist()))

# %% [markdown]
# Under `seq_mean` a 1-token completion carries 6× the per-token push of a 6-token one. With a positive
# advantage that favours **short** correct answers; with a negative one, a long wrong answer is pushed
# down less per token, so wrong answers drift **longer** (the bias Dr. GRPO points out).
#
# To measure it without training noise, take the reward `first_token_reward` (1 if $y_1$ is the key,
# regardless of what follows), draw 300 batches of 8 samples per prompt from the warm policy, and compute
# the **mean update direction** $\bar g$ of each mode (per-batch estimates via the chain rule,
# `batch_estimates`). We then ask how the mean lengths of correct and of wrong completions change along
# $\bar g$, per unit of reward gained:
# $\langle\bar g,\nabla\ell\rangle/\langle\bar g,\nabla J\rangle$, with $\ell=\mathbb E[|y|\mid\text{correct}]$
# or $\mathbb E[|y|\mid\text{wrong}]$, all gradients exact by enumeration. The exact gradient
# $\nabla J$ itself is the reference.

# %%
params = list(sft.parameters())

def flat_grad(value):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(value, params)])

def cond_length(weight):  # E[|y| | event] with event weights (P, N)
    lp = enum.seq_logprobs(sft)
    return enum.expectation(lp, weight * lengths) / enum.expectation(lp, weight)

grad_J = flat_grad(enum.expectation(enum.seq_logprobs(sft), key_r))
grad_ok, grad_bad = flat_grad(cond_length(key_r)), flat_grad(cond_length(1 - key_r))

M, k_agg = 300, 8
agg_pool = sft.sample(torch.arange(P).repeat(M), k_agg, generator=torch.Generator().manual_seed(2))
with torch.no_grad():
    agg_logp = sft.log_probs(agg_pool.prompt_ids, agg_pool.tokens)
key_rewards = first_token_reward(task, agg_pool.prompt_ids, agg_pool.tokens, agg_pool.mask)
seq_scores = sequence_scores(sft, agg_pool.prompt_ids, agg_pool.tokens, agg_pool.mask)  # (M·B, D)

drift = {"exact gradient": (float(grad_ok @ grad_J / (grad_J @ grad_J)), 0.0,
                            float(grad_bad @ grad_J / (grad_J @ grad_J)), 0.0)}
for mode in ("sum", "seq_mean", "token_mean", "constant"):
    def loss_fn(lp, rows, mode=mode):
        return reinforce_loss(lp, key_rewards[rows], agg_pool.mask[rows], baseline=LeaveOneOutBaseline(),
                              group_size=k_agg, aggregation=mode).loss
    est = batch_estimates(loss_fn, agg_logp, seq_scores, batch_size=P * k_agg)  # (M, D)
    gain = float((est @ grad_J).mean())
    ok, bad = est @ grad_ok / gain, est @ grad_bad / gain  # (M,) per batch
    (ok_mean, ok_se), (bad_mean, bad_se) = mean_se_along(ok, 0), mean_se_along(bad, 0)  # over the M batches
    drift[mode] = (float(ok_mean), float(ok_se), float(bad_mean), float(bad_se))

# %%
# NBVAL_CHECK_OUTPUT
print("change in mean length per unit of reward gained (± standard error)")
print(f"{'direction':<16}{'correct':>16}{'wrong':>16}")
for name, (ok, ok_se, bad, bad_se) in drift.items():
    if name == "exact gradient":
        print(f"{name:<16}{ok:>+9.2f}{'(exact)':>7}{bad:>+9.2f}{'(exact)':>7}")
    else:
        print(f"{name:<16}{ok:>+9.2f} ± {ok_se:.2f}{bad:>+9.2f} ± {bad_se:.2f}")
ex_ok, _, ex_bad, _ = drift["exact gradient"]
for mode in ("sum", "token_mean", "constant"):  # unbiased directions: the exact gradient's drift
    ok, ok_se, bad, bad_se = drift[mode]
    assert abs(ok - ex_ok) < 4 * ok_se and abs(bad - ex_bad) < 4 * bad_se, mode
ok, ok_se, bad, bad_se = drift["seq_mean"]
assert ok < ex_ok - 4 * ok_se and bad > ex_bad + 4 * bad_se  # shorter correct, longer wrong answers

# %% [markdown]
# `sum`, `constant` and `token_mean` move lengths exactly as the true gradient does (within noise;
# `constant` is `sum` scaled by $1/T$, and `token_mean`'s batch-dependent normaliser is nearly constant at
# this batch size). `seq_mean` makes **correct completions shorter and wrong ones longer** than the true
# gradient would — a length bias that has nothing to do with the reward. Note also that even the exact
# gradient changes lengths here: the parameters that choose $y_1$ are shared with those that decide when
# to stop, as in any neural policy.

# %% [markdown]
# ## 6. "Concentrated distributions lower the variance"
#
# The seed text says LLMs suit REINFORCE because at each step the policy puts its mass on a few tokens.
# For a softmax, the score with respect to the **logits** is $e_{y}-\pi$, with
# $\mathbb E\|e_y-\pi\|^2=1-\sum_v\pi(v)^2$: it vanishes as $\pi$ concentrates.
#
# To test it we must sharpen the policy **without changing the scale of its gradient**. Multiplying the
# output layer by $s$ (`scaled_copy`) sharpens $\pi$ to $\mathrm{softmax}(s z)$ but also multiplies by $s$
# every gradient that flows back through that layer — a confound: the variance then grows with $s$ for a
# reason that has nothing to do with concentration. `sharpened_copy` instead adds a **logit offset**
# $(s-1)\,c$ with $c=z_\theta$ held constant: the same distribution $\mathrm{softmax}(s z)$, and
# $\nabla_\theta\log\pi'(y)=(\partial z/\partial\theta)^\top(e_y-\pi')$ at the scale of $z$ (`scaled_copy`'s
# gradient is exactly this one with every parameter below the output layer multiplied by $s$; a test checks it).
#
# And variance alone is not the point: a sharper policy also has a smaller true gradient $\nabla J$. What
# decides how many samples a good step needs is the **signal-to-noise ratio** of one sample,
# $\mathrm{SNR}=\|\nabla J\|^2/\operatorname{tr}\operatorname{Cov}(g_i)$, which no rescaling of the
# gradient changes. For inverse temperatures $s=0.5\ldots4$: the exact entropy and $\nabla J$ (enumeration),
# and $\operatorname{tr}\operatorname{Cov}(g_i)$ of one sample (300 completions per prompt, leave-one-out
# within groups of 10, SE over the 120 groups), match reward, all parameters.

# %%
section_start = time.perf_counter()
head_columns = sft.head.weight.numel() + sft.head.bias.numel()  # the output layer: the last columns of g
temp_rows = []
for inv_t in (0.5, 1.0, 2.0, 4.0):
    pol = sharpened_copy(sft, inv_t)  # softmax(s·z), the gradient at the scale of z
    grad_J = torch.cat([g.reshape(-1) for g in torch.autograd.grad(
        enum.expectation(enum.seq_logprobs(pol), gold), list(pol.parameters()))])  # exact ∇J, (D,)
    with torch.no_grad():
        entropy = float(enum.entropy(pol))
    b = pol.sample(torch.arange(P), 300, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        lp = pol.log_probs(b.prompt_ids, b.tokens)
    out = reinforce_loss(lp, match_reward(task, b.prompt_ids, b.tokens, b.mask), b.mask,
                         baseline=LeaveOneOutBaseline(), group_size=10)
    g = (out.advantages[..., None] * token_scores(pol, b.prompt_ids, b.tokens, b.mask)).sum(1)  # (B, D)
    scale = torch.full((g.shape[1],), float(inv_t))
    scale[-head_columns:] = 1.0  # scaled_copy's gradient = this one × s below the output layer (exact)
    row = {"s": inv_t, "entropy": entropy}
    for name, gg, gJ in (("offset", g, grad_J), ("scaled", g * scale, grad_J * scale)):
        var, var_se = mean_se(grouped_total_variance(gg, 10)[0])
        signal = float(gJ.double() @ gJ.double())  # ‖∇J‖²
        row[name] = dict(var=var, var_se=var_se, signal=signal, snr=signal / var, snr_se=signal / var * var_se / var)
    temp_rows.append(row)
print(f"section 6: {time.perf_counter() - section_start:.1f} s")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.2))
ent = [r["entropy"] for r in temp_rows]
for name, label in (("offset", "logit offset (fixed scale)"), ("scaled", "output layer × s (confounded)")):
    ax1.errorbar(ent, [r[name]["var"] for r in temp_rows], yerr=[r[name]["var_se"] for r in temp_rows],
                 fmt="o-", capsize=3, label=label)
    ax2.errorbar(ent, [r[name]["snr"] for r in temp_rows], yerr=[r[name]["snr_se"] for r in temp_rows],
                 fmt="o-", capsize=3, label=label)
ax1.set(xlabel="mean per-token entropy (nats)", ylabel="tr Cov of one sample's gradient", yscale="log",
        title="variance (± 1 SE)")
ax2.set(xlabel="mean per-token entropy (nats)", ylabel="SNR = ‖∇J‖² / tr Cov", title="signal-to-noise (± 1 SE)")
ax1.legend(fontsize=8); ax2.legend(fontsize=8)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'s':>4}{'entropy':>9}{'tr Cov, fixed scale':>22}{'‖∇J‖²':>9}{'SNR':>18}{'tr Cov, layer × s':>20}")
for r in temp_rows:
    o, sc = r["offset"], r["scaled"]
    print(f"{r['s']:>4.1f}{r['entropy']:>9.2f}{o['var']:>14.2f} ± {o['var_se']:.2f}{o['signal']:>9.3f}"
          f"{o['snr']:>11.4f} ± {o['snr_se']:.4f}{sc['var']:>13.2f} ± {sc['var_se']:.2f}")
ent, var, var_se, snr, snr_se = (torch.tensor([r[k] if k == "entropy" else r["offset"][k] for r in temp_rows])
                                 for k in ("entropy", "var", "var_se", "snr", "snr_se"))
assert (ent.diff() < 0).all() and (var.diff() < 0).all()  # sharper: lower variance at every step (point estimates)
assert var[0] - var[-1] > 4 * (var_se[0] ** 2 + var_se[-1] ** 2).sqrt()  # ... resolved end to end
assert snr[2] - snr[0] > 4 * (snr_se[2] ** 2 + snr_se[0] ** 2).sqrt()  # SNR rises from s = 0.5 to s = 2 ...
assert snr[2] - snr[3] > 3 * (snr_se[2] ** 2 + snr_se[3] ** 2).sqrt()  # ... and falls again at s = 4
assert temp_rows[-1]["scaled"]["var"] > temp_rows[1]["scaled"]["var"]  # the confounded measurement rises

# %% [markdown]
# At a fixed parameter scale the claim holds **for the variance**: $\operatorname{tr}\operatorname{Cov}$ falls at
# every step as the policy sharpens, from entropy 0.91 to 0.31 nats (resolved end to end; the step from $s=1$
# to $s=2$ alone is about 2 SE). But the **signal** falls too: a sharp policy has little left to gain from a
# small change, and $\|\nabla J\|^2$ at $s=4$ is well under half its value at $s=1$. The SNR, which sets how many
# samples a useful step needs, therefore rises (from $s=0.5$ to $s=2$) and then **falls** again at $s=4$:
# concentration helps up to a point, then the gradient vanishes faster than the noise. The earlier version of
# this lesson sharpened by scaling the output layer and found the variance over all parameters *rising*
# (last column): that rise is the factor $s$ on every gradient below the output layer, not an effect of
# concentration. "Concentrated distributions lower the variance" is true of the score at fixed scale; it is
# not a promise that the estimate gets more useful.

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

# %% nbgrader={"grade": false, "grade_id": "setup_03", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch

from reinforce_edu.teaching import exercises


# %% [markdown] nbgrader={"grade": false, "grade_id": "reward_to_go_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Exercise 7 — reward-to-go
#
# `rewards` and `mask` have shape `(B, T)`. Return $G_t = \sum_{s\ge t}\gamma^{s-t} m_s r_s$, and 0 wherever
# $m_t = 0$ (after EOS), shape `(B, T)`.

# %% nbgrader={"grade": false, "grade_id": "reward_to_go", "locked": false, "schema_version": 3, "solution": true, "task": false}
def reward_to_go(rewards, mask, gamma):
    ### BEGIN SOLUTION
    out = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    for t in reversed(range(rewards.shape[1])):
        running = rewards[:, t] * mask[:, t] + gamma * running
        out[:, t] = running * mask[:, t]
    return out
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "reward_to_go_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
exercises.check_reward_to_go(reward_to_go)
### BEGIN HIDDEN TESTS
exercises.check_reward_to_go(reward_to_go, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "token_mean_loss_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Exercise 8 — token-mean aggregation with a mask
#
# Per-token losses are $\ell_{it} = -A_{it}\log\pi_\theta(y_{it})$. Return DAPO's token mean over the whole batch:
# $\sum_{it} m_{it}\ell_{it} / \sum_{it} m_{it}$ (a scalar). Masked tokens must not count in either sum. Not
# `seq_mean` (each sequence's mean, then the mean over sequences): the check tells them apart.

# %% nbgrader={"grade": false, "grade_id": "token_mean_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def token_mean_loss(logp, advantages, mask):
    ### BEGIN SOLUTION
    return -(mask * advantages * logp).sum() / mask.sum()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "token_mean_loss_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
exercises.check_token_mean_loss(token_mean_loss)
### BEGIN HIDDEN TESTS
exercises.check_token_mean_loss(token_mean_loss, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# | question | measured here |
# |---|---|
# | token- vs sequence-level credit, dense reward | reward-to-go lowers the variance at every later position — with a per-position baseline; with the sequence baseline it *raises* it |
# | delayed reward on the first token | sequence credit and $\gamma=1$ learn it equally fast; $\gamma=0.5$ slower; $\gamma=0$ never |
# | aggregation and length | `sum`, `constant`, `token_mean` follow the true gradient; `seq_mean` shortens correct and lengthens wrong completions |
# | long sequences ($T=32$, block rewards): variance | token credit with a baseline of $G_t$ (leave-one-out per position, or a learned critic) cuts it by a third to a half; with the baseline of $R$ it rises; learned $V(x)$ and a global mean beat leave-one-out by $1/k$ |
# | long sequences: learning speed (10 seeds) | not resolved: with a baseline of $G_t$ no measurable gain early, about +0.005 in $J$ after 80 steps; with the baseline of $R$ slower (resolved) |
# | sharpening at fixed gradient scale | variance falls with entropy; SNR rises, then falls (the true gradient vanishes); scaling the output layer instead confounds the variance with the factor $s$ |
#
# All from one loss, `reinforce_loss(logp, rewards, mask, credit=..., gamma=..., aggregation=..., baseline=...)`.
#
# **What to try next**
# - Give the delayed task a per-token cost (e.g. $-0.05$ per token) and compare `seq_mean` with `sum` in a
#   training run: which one drifts in length?
# - In section 4, fit the critic on 16 instead of 64 completions per prompt: when does it stop beating the
#   per-position leave-one-out baseline?
# - Raise `k_agg` to 64: does `token_mean` get any closer to `sum`? Lower it to 2.
# - Lesson 04 adds the reference policy: the KL term that keeps RL from drifting into reward hacking.
