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
# - whether "concentrated distributions lower the variance", as the seed text claims.
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
import time

import matplotlib.pyplot as plt
import torch

from reinforce_edu.core.baselines import LeaveOneOutBaseline
from reinforce_edu.core.credit import aggregation_weights, completion_mask
from reinforce_edu.core.losses import reinforce_loss
from reinforce_edu.toy.estimates import batch_estimates, position_variance, sequence_scores, token_scores
from reinforce_edu.toy.rewards import delayed_rewards, first_token_reward, match_reward, match_token_rewards
from reinforce_edu.toy.enumeration import Enumeration
from reinforce_edu.toy.sequences import ToyPolicy, ToyTask, demonstrations, scaled_copy, warm_up
from reinforce_edu.toy.train import ToyTrainConfig, train_toy

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
# ## 4. Aggregation modes: sum, per-sequence mean, token mean, constant — and output length
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
    drift[mode] = (float(ok.mean()), float(ok.std() / M ** 0.5), float(bad.mean()), float(bad.std() / M ** 0.5))

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
# ## 5. "Concentrated distributions lower the variance"
#
# The seed text says LLMs suit REINFORCE because at each step the policy puts its mass on a few tokens.
# For a softmax, the score with respect to the **logits** is $e_{y}-\pi$, with
# $\mathbb E\|e_y-\pi\|^2=1-\sum_v\pi(v)^2$: it vanishes as $\pi$ concentrates. We sharpen or flatten the
# warm policy by scaling its output layer (`scaled_copy`, inverse temperature 0.5…4), and measure the
# exact per-token entropy and the variance of one sample's gradient (leave-one-out, `match_reward`),
# both for the **output bias** (the gradient with respect to the logits, summed over positions) and for
# **all parameters**.

# %%
temp_rows = []
for inv_t in (0.5, 1.0, 2.0, 4.0):
    pol = scaled_copy(sft, inv_t)
    with torch.no_grad():
        entropy = float(enum.entropy(pol))
    b = pol.sample(torch.arange(P), 300, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        lp = pol.log_probs(b.prompt_ids, b.tokens)
    out = reinforce_loss(lp, match_reward(task, b.prompt_ids, b.tokens, b.mask), b.mask,
                         baseline=LeaveOneOutBaseline(), group_size=300)
    g = (out.advantages[..., None] * token_scores(pol, b.prompt_ids, b.tokens, b.mask)).sum(1)  # (B, D)
    bias_slice = g[:, -task.vocab_size:]  # head.bias is the last parameter: ∂/∂logits
    temp_rows.append((inv_t, entropy, float(bias_slice.double().var(0).sum()), float(g.double().var(0).sum())))

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot([r[1] for r in temp_rows], [r[2] for r in temp_rows], "o-", label="output bias (logits)")
ax.plot([r[1] for r in temp_rows], [r[3] / 50 for r in temp_rows], "s--", label="all parameters / 50")
ax.set_xlabel("mean per-token entropy (nats)"); ax.set_ylabel("variance of one sample"); ax.legend(fontsize=8)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'1/temperature':>14}{'entropy':>9}{'var (logits)':>14}{'var (all)':>11}")
for inv_t, h, v_bias, v_all in temp_rows:
    print(f"{inv_t:>14.1f}{h:>9.2f}{v_bias:>14.3f}{v_all:>11.2f}")
ent, v_bias, v_all = (torch.tensor([r[i] for r in temp_rows]) for i in (1, 2, 3))
assert (ent.diff() < 0).all() and (v_bias.diff() < 0).all()  # sharper -> lower variance in logit space
assert v_all[-1] > v_all[1]  # ... but over all parameters the sharpest policy is the noisiest

# %% [markdown]
# In logit space the claim holds: sharper distributions, lower variance. Over all parameters it does
# **not** follow: scaling the output layer also scales the gradient that flows back into the network,
# and the variance over all parameters *rises* as the policy sharpens. "Concentrated distributions
# lower the variance" is a statement about the score of the sampled token, not a guarantee about the
# parameters you train.

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
# | entropy vs variance | lower in logit space as the policy sharpens; higher over all parameters |
#
# All from one loss, `reinforce_loss(logp, rewards, mask, credit=..., gamma=..., aggregation=..., baseline=...)`.
#
# **What to try next**
# - Give the delayed task a per-token cost (e.g. $-0.05$ per token) and compare `seq_mean` with `sum` in a
#   training run: which one drifts in length?
# - Replace the leave-one-out position baseline by a learned value per (prompt, position) and compare the
#   per-position variance.
# - Raise `k_agg` to 64: does `token_mean` get any closer to `sum`? Lower it to 2.
# - Lesson 04 adds the reference policy: the KL term that keeps RL from drifting into reward hacking.
