# %% [markdown]
# # 01 · Bandits and the policy gradient
#
# **What you will learn**
# - the objective $J(\theta)$ of a contextual bandit — the smallest world where the policy gradient is
#   known exactly — and its exact gradient, checked against finite differences;
# - the **log-derivative trick** that turns $\nabla_\theta J$ into an expectation you can *sample*:
#   the score-function (REINFORCE) estimator;
# - that the estimator is unbiased (its mean lands within 4 standard errors of $\nabla_\theta J$ in every
#   coordinate) and that its error shrinks like $1/\sqrt n$ with $n$ samples;
# - the one-line **surrogate loss** whose gradient is the estimator, and how to train a softmax policy
#   with it and `torch.optim`.
#
# Every claim below is printed as a rounded number in a cell marked `# NBVAL_CHECK_OUTPUT` (the test
# suite re-runs the lesson and compares) and `assert`ed. Lesson 02 adds one idea: baselines.

# %% [markdown]
# ## 1. The world: a contextual bandit
#
# A *prompt* $x \in \{0,\dots,P-1\}$ is given, the policy picks an *arm* $a \in \{0,\dots,A-1\}$ and
# receives a reward $R = r(x, a) + \varepsilon$, $\varepsilon \sim \mathcal N(0, \sigma^2)$. For an LLM,
# $x$ is the prompt, $a$ the whole completion and $r$ the reward model's score; the bandit keeps the
# same maths with a table small enough to compute everything exactly.
#
# The policy is a softmax over one row of logits per prompt, $\pi_\theta(a|x) = \mathrm{softmax}(\theta_x)_a$,
# with $\theta \in \mathbb R^{P\times A}$.
#
# *Implemented in* `reinforce_edu/toy/bandits.py`: `make_bandit`, `ContextualBandit`, `SoftmaxPolicy`.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from reinforce_edu.toy.bandits import make_bandit
from reinforce_edu.core.baselines import NoBaseline, make_baseline
from reinforce_edu.core.policy_gradient import surrogate_loss
from reinforce_edu.core.significance import mean_se_along
from reinforce_edu.toy.bandit_estimates import batch_advantages, reinforce_gradient
from reinforce_edu.toy.bandit_estimates import baseline_estimates, sample_batches

torch.set_num_threads(1)  # tiny tensors: one thread is faster, and the same numbers everywhere

bandit = make_bandit(n_prompts=4, n_arms=5, noise_std=0.5, seed=0)
policy = bandit.make_policy(init_std=1.0, seed=1)  # random logits, so every arm has some mass
P, A = bandit.n_prompts, bandit.n_arms
torch.set_printoptions(precision=3, sci_mode=False)
print("mean reward r(x, a), one row per prompt:\n", bandit.mean_rewards)
print("policy π_θ(a|x):\n", policy.probs())

# %% [markdown]
# ## 2. The objective and its exact gradient
#
# With prompts drawn uniformly, the expected reward is
#
# $$J(\theta) = \frac1P \sum_x \sum_a \pi_\theta(a|x)\, r(x,a).$$
#
# The softmax derivative $\partial \pi_\theta(b|x)/\partial\theta_{x,a} = \pi_\theta(b|x)\,(\delta_{ab} - \pi_\theta(a|x))$
# gives the gradient in closed form,
#
# $$\frac{\partial J}{\partial \theta_{x,a}} = \frac1P\, \pi_\theta(a|x)\,\big(r(x,a) - v(x)\big),
# \qquad v(x) = \sum_b \pi_\theta(b|x)\, r(x,b),$$
#
# where $v(x)$ is the value of prompt $x$: an arm is pushed up exactly when it beats the policy's average.
#
# *Implemented in* `reinforce_edu/toy/bandits.py`: `ContextualBandit.objective`, `ContextualBandit.exact_gradient`.
#
# Before trusting it as the oracle for everything that follows, we check it against central finite
# differences $\big(J(\theta + h e_i) - J(\theta - h e_i)\big)/2h$, whose error is $O(h^2)$, in float64.

# %%
theta = policy.logits.detach().double()  # (P, A), float64 for the check
exact64 = bandit.exact_gradient(theta)  # (P, A)

h = 1e-5
finite_diff = torch.zeros_like(theta)
for x in range(P):
    for a in range(A):
        e = torch.zeros_like(theta)
        e[x, a] = h
        finite_diff[x, a] = (bandit.objective(theta + e) - bandit.objective(theta - e)) / (2 * h)

theta_ag = theta.clone().requires_grad_(True)
(autograd,) = torch.autograd.grad(bandit.objective(theta_ag), [theta_ag])  # a second oracle

fd_error = float((finite_diff - exact64).abs().max())
ag_error = float((autograd - exact64).abs().max())
print(f"max |finite difference − exact| = {fd_error:.1e}")
print(f"max |autograd − exact|          = {ag_error:.1e}")

# %%
# NBVAL_CHECK_OUTPUT
bound = 10.0 ** math.ceil(math.log10(fd_error))  # the power of ten just above the error: a stable print
print(f"exact gradient vs central finite differences: max abs error < {bound:.0e}")
print(f"exact gradient vs autograd of J:              max abs error < 1e-12: {ag_error < 1e-12}")
assert fd_error < 1e-6 and ag_error < 1e-12

# %% [markdown]
# ## 3. The log-derivative trick
#
# The closed form needs the whole table $r(x,\cdot)$. An LLM has $|V|^T$ possible completions: we can
# only *sample* them. The trick is the identity $\nabla_\theta \pi = \pi\, \nabla_\theta \log\pi$:
#
# $$\nabla_\theta J = \frac1P\sum_x \sum_a r(x,a)\, \nabla_\theta \pi_\theta(a|x)
# = \frac1P\sum_x \sum_a \pi_\theta(a|x)\, r(x,a)\, \nabla_\theta \log\pi_\theta(a|x)
# = \mathbb E_{x,\;a\sim\pi_\theta}\big[R\, \nabla_\theta \log \pi_\theta(a|x)\big].$$
#
# The gradient of $J$ became the expectation of *reward × score*, where the score
# $\nabla_\theta \log\pi_\theta(a|x)$ needs only the probability of the sample we drew — never the
# reward's derivative (the reward model can be a black box). For the softmax policy the score is
# $\nabla_{\theta_x} \log\pi_\theta(a|x) = e_a - \pi_\theta(\cdot|x)$.
#
# The identity is exact: weighting the score of *every* arm by $\pi_\theta(a|x)\,r(x,a)$ (no sampling)
# gives back $\nabla_\theta J$ to float64 precision. The score comes from autograd of
# `SoftmaxPolicy.log_prob`.

# %%
policy64 = bandit.make_policy(init_std=1.0, seed=1).double()  # the same θ, in float64
prompts = torch.arange(P)
every_arm = torch.arange(A).repeat(P, 1)  # (P, A): "sample" each arm once
logp = policy64.log_prob(prompts, every_arm)  # (P, A)
weights = (policy64.probs() * bandit.mean_rewards).detach()  # π(a|x) r(x, a), (P, A)
(trick,) = torch.autograd.grad((weights * logp).sum() / P, [policy64.logits])  # Σ π r ∇log π / P
trick_error = float((trick - exact64).abs().max())

# %%
# NBVAL_CHECK_OUTPUT
print(f"E[R ∇log π] by enumeration vs exact ∇J: max abs error < 1e-12: {trick_error < 1e-12}")
assert trick_error < 1e-12

# %% [markdown]
# ## 4. The score-function estimator and its surrogate loss
#
# Replace the expectation by an average over a batch of $n$ samples (here $k$ arms for each of the
# $P$ prompts, $n = P k$):
#
# $$\hat g = \frac1n \sum_{i=1}^n R_i\, \nabla_\theta \log\pi_\theta(a_i|x_i).$$
#
# We never write the score by hand. $\hat g$ is the gradient of the **surrogate loss**
# (minimised, hence the minus sign; the rewards are constants, hence `detach`)
#
# $$L(\theta) = -\frac1n\sum_{i=1}^n \log\pi_\theta(a_i|x_i)\cdot \mathrm{stopgrad}(R_i), \qquad \nabla_\theta L = -\hat g,$$
#
# one line of code: `loss = -(logp * advantages.detach()).mean()`. It is not the objective — its
# value means nothing — only its gradient does.
#
# *Implemented in* `reinforce_edu/core/policy_gradient.py`: `surrogate_loss` (the line above),
# `reinforce_gradient` (sample → surrogate → `autograd.grad` → $\hat g$, shape $(P, A)$ like $\theta$).

# %%
gen = torch.Generator().manual_seed(2)
batch = bandit.sample_batch(policy, k=4, generator=gen)  # prompts (P,), actions and rewards (P, k)
g_hat = reinforce_gradient(policy, batch)  # (P, A)
exact = bandit.exact_gradient(policy.logits)  # (P, A), float32
cos = float(torch.nn.functional.cosine_similarity(g_hat.reshape(1, -1), exact.reshape(1, -1)))
print("one batch of n =", batch.actions.numel(), "samples")
print("ĝ:\n", g_hat)
print("∇J:\n", exact)
print(f"cosine(ĝ, ∇J) = {cos:.2f}  — one batch is noisy; the next sections average many")

# %% [markdown]
# ## 5. Unbiased: the mean of many estimates is $\nabla_\theta J$
#
# Draw $M$ independent batches, compute $\hat g_m$ for each, and compare their mean with the exact
# gradient coordinate by coordinate. If the estimator is unbiased, the difference is noise of size
# one standard error $\mathrm{SE} = \mathrm{std}(\hat g)/\sqrt M$: each of the $P\cdot A = 20$
# coordinates should land within $4\,\mathrm{SE}$ (a chance of about $6\cdot10^{-5}$ per coordinate to miss).

# %%
M = 2000
gen = torch.Generator().manual_seed(3)
estimates = torch.stack([reinforce_gradient(policy, bandit.sample_batch(policy, k=4, generator=gen))
                         for _ in range(M)]).double()  # (M, P, A)
mean, se = mean_se_along(estimates, 0)  # (P, A) each: over the M batches, SE = std / √M
z = (mean - exact.double()) / se  # (P, A): distance to ∇J in standard errors

fig, ax = plt.subplots(figsize=(5, 3.6))
ax.errorbar(exact.reshape(-1), mean.reshape(-1), yerr=4 * se.reshape(-1), fmt="o", ms=4, capsize=2,
            label=f"mean of {M} estimates ± 4 SE")
lim = float(exact.abs().max()) * 1.2
ax.plot([-lim, lim], [-lim, lim], "k--", lw=1, label="y = x")
ax.set_xlabel("exact ∂J/∂θ (x, a)")
ax.set_ylabel("REINFORCE mean")
ax.set_title("The estimator is unbiased: every coordinate on y = x")
ax.legend(fontsize=8)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print(f"{M} batches of n = {P * 4}: largest |mean − ∇J| over the {P * A} coordinates = {z.abs().max():.1f} SE")
assert bool((z.abs() < 4).all()), "a coordinate of the REINFORCE mean is more than 4 SE from ∇J"

# %% [markdown]
# ## 6. The error shrinks like $1/\sqrt n$
#
# Unbiased is not enough: one batch is what the optimiser sees. With $n$ independent samples the
# mean-squared error is pure variance,
#
# $$\mathbb E\,\|\hat g_n - \nabla J\|^2 = \frac{\operatorname{tr}\operatorname{Cov}(\hat g_1)}{n}
# \quad\Longrightarrow\quad \text{RMS error} \propto n^{-1/2},$$
#
# a line of slope $-\tfrac12$ on a log-log plot. To measure it cheaply we compute every sample's own
# estimate $g_i = R_i \nabla_\theta\log\pi_\theta(a_i|x_i)$ once — with `torch.func.vmap` over
# `torch.func.grad`, *implemented in* `reinforce_edu/core/per_sample.py: per_sample_grads`, wrapped by
# `reinforce_edu/core/variance.py: baseline_estimates` — and average growing prefixes of them:
# $\hat g_n$ for $n = P k$, $k = 1, 2, 4, \dots, 1024$, in $R = 100$ independent repetitions.

# %%
R, K = 100, 1024
batches = sample_batches(bandit, policy, n_batches=R, k=K, seed=4)  # actions, rewards: (R, P, K)
per_sample, _ = baseline_estimates(policy, batches, NoBaseline(), warmup=0)  # (R, P·K, D), D = P·A
per_sample = per_sample.reshape(R, P, K, P * A).double()  # sample j of prompt x in repetition r
prefix = per_sample.cumsum(2)  # (R, P, K, D): running sums over the first k samples of each prompt

ks = 2 ** np.arange(11)  # 1 .. 1024 samples per prompt
ns = P * ks
rms = np.array([float(((prefix[:, :, k - 1].mean(1) / k - exact.reshape(-1)) ** 2).sum(1).mean().sqrt())
                for k in ks])  # RMS over the R repetitions of ‖ĝ_n − ∇J‖
slope, intercept = np.polyfit(np.log(ns), np.log(rms), 1)

# prediction sqrt(tr Cov(ĝ_1) / k): ĝ_1 uses one sample per prompt; R·K independent copies of it
g1 = per_sample.mean(1).reshape(R * K, -1)  # (R·K, D)
predicted = np.sqrt(float(g1.var(0).sum()) / ks)

fig, ax = plt.subplots(figsize=(5, 3.6))
ax.loglog(ns, rms, "o", label="measured RMS ‖ĝ_n − ∇J‖")
ax.loglog(ns, predicted, "k--", lw=1, label="√(tr Cov(ĝ₁) / k)")
ax.loglog(ns, np.exp(intercept) * ns ** slope, "-", color="tab:orange", alpha=0.6,
          label=f"fit: slope {slope:.2f}")
ax.set_xlabel("samples per batch n")
ax.set_ylabel("error")
ax.set_title("REINFORCE error ∝ n^(−1/2)")
ax.legend(fontsize=8)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print(f"log-log slope of the RMS error vs n: {slope:.2f}   (theory −0.50)")
print(f"error at n = {ns[0]}: {rms[0]:.2f}, at n = {ns[-1]}: {rms[-1]:.3f}  (×{rms[0] / rms[-1]:.0f} for ×{ns[-1] // ns[0]} samples)")
assert abs(slope + 0.5) < 0.1

# %% [markdown]
# Halving the error costs four times the samples. That is the price of the score-function
# estimator, and the reason lesson 02 exists: a **baseline** lowers the constant
# $\operatorname{tr}\operatorname{Cov}(\hat g_1)$ instead.
#
# ## 7. Training a policy with REINFORCE
#
# The whole algorithm, one step: sample $k$ arms for each prompt, compute the surrogate loss,
# let `torch.optim` take a step. Three learners start from the uniform policy ($\theta = 0$), each with
# Adam (lr 0.1) for 300 steps, averaged over 5 seeds:
#
# - **exact gradient ascent** — the step uses $\nabla J$ itself: what infinitely many samples would do;
# - **REINFORCE** — advantages $A_i = R_i$, $k = 4$ samples per prompt;
# - **REINFORCE + leave-one-out baseline** (a teaser for lesson 02) — $A_i = R_i - \frac{1}{k-1}\sum_{j\ne i} R_j$,
#   same samples budget: each sample's reward minus the mean reward of the *other* $k-1$ samples of its
#   prompt. That mean does not depend on sample $i$, so (as lesson 02 proves and measures) it leaves the
#   gradient unbiased while removing most of its noise. *Implemented in*
#   `reinforce_edu/core/baselines.py: LeaveOneOutBaseline`.
#
# A caution on the optimiser: Adam divides each coordinate's step by a running root-mean-square of its
# gradients, so a noisier estimator gets *smaller* steps. That partly hides the variance this course is
# about: under plain SGD, with the same learning rate for all three, the noisy estimator's steps would be as
# large as they are noisy. The comparison below is made under Adam (what LLM fine-tuning uses); one of the
# "try next" items at the end asks you to repeat it with SGD.

# %%
STEPS, K_TRAIN, LR, SEEDS = 300, 4, 0.1, 5


def train(method: str, seed: int) -> np.ndarray:
    # J(θ) after each of STEPS steps of Adam; method: "exact", "none" or a baseline name
    policy = bandit.make_policy()  # θ = 0: the uniform policy
    opt = torch.optim.Adam(policy.parameters(), lr=LR)
    baseline = make_baseline(method, n_prompts=P) if method != "exact" else None
    gen = torch.Generator().manual_seed(seed)
    curve = [float(bandit.objective(policy.logits.detach()))]
    for _ in range(STEPS):
        if method == "exact":
            loss = -bandit.objective(policy.logits)  # ascend J itself
        else:
            batch = bandit.sample_batch(policy, k=K_TRAIN, generator=gen)
            adv = batch_advantages(batch, baseline)  # (P, k): R − b
            loss = surrogate_loss(policy.log_prob(batch.prompts, batch.actions), adv)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if baseline is not None:
            baseline.update(batch.rewards, batch.prompts)  # after the step: b never sees its own batch
        curve.append(float(bandit.objective(policy.logits.detach())))
    return np.array(curve)


curves = {m: np.mean([train(m, s) for s in range(SEEDS)], axis=0) for m in ("exact", "none", "leave_one_out")}
optimum = bandit.optimal_value()

fig, ax = plt.subplots(figsize=(6, 3.6))
labels = {"exact": "exact gradient ascent", "none": "REINFORCE", "leave_one_out": "REINFORCE + leave-one-out"}
for m, c in curves.items():
    ax.plot(c, label=labels[m])
ax.axhline(optimum, color="k", ls="--", lw=1, label="optimum max_θ J")
ax.set_xlabel("step")
ax.set_ylabel("J(θ)")
ax.set_title(f"Learning curves (mean of {SEEDS} seeds, k = {K_TRAIN} per prompt)")
ax.legend(fontsize=8)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
j0 = curves["none"][0]
gap = {m: (c[-1] - j0) / (optimum - j0) for m, c in curves.items()}
print(f"J at the uniform start: {j0:.3f}   optimum: {optimum:.3f}")
for m, c in curves.items():
    print(f"{labels[m]:<28} final J = {c[-1]:.3f}   gap closed {100 * gap[m]:.0f}%")
assert gap["none"] > 0.8, "REINFORCE should close most of the gap to the optimum"
assert all(c[-1] <= optimum + 1e-6 for c in curves.values())

# %% [markdown]
# ## Exercises
#
# Each exercise asks you to write, from its formula, something the library implements. While a check runs,
# the library's own version of it is unavailable, so your answer must not call `reinforce_edu`. The check
# below each answer tries your function on several inputs and says what was expected, for which input,
# which usual mistake gives exactly your answer, and what to revisit. In a class, work in the released
# assignment (`python -m reinforce_edu.teaching.assignments release DIR`): there the worked solutions below
# are stripped. (Instructors: these cells carry nbgrader markup; see the README.)

# %% nbgrader={"grade": false, "grade_id": "setup_01", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch

from reinforce_edu.teaching import exercises


# %% [markdown] nbgrader={"grade": false, "grade_id": "score_function_estimate_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Exercise 1 — the score-function estimator
#
# For a single prompt with policy probabilities $\pi = \mathrm{softmax}(\theta)$ (shape `(A,)`), sampled arms
# `actions` (shape `(n,)`) and advantages `advantages` (shape `(n,)`), return the REINFORCE estimate
# $\hat g = \frac1n\sum_i A_i\,\nabla_\theta \log\pi_\theta(a_i)$, shape `(A,)`. Use the closed form
# $\nabla_\theta\log\mathrm{softmax}(\theta)_a = e_a - \pi$ (no autograd needed).

# %% nbgrader={"grade": false, "grade_id": "score_function_estimate", "locked": false, "schema_version": 3, "solution": true, "task": false}
def score_function_estimate(probs, actions, advantages):
    ### BEGIN SOLUTION
    onehot = torch.nn.functional.one_hot(actions, probs.shape[0]).to(probs.dtype)  # (n, A)
    return (advantages[:, None] * (onehot - probs)).mean(0)  # (A,)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "score_function_estimate_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
exercises.check_score_function_estimate(score_function_estimate)
### BEGIN HIDDEN TESTS
exercises.check_score_function_estimate(score_function_estimate, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# REINFORCE climbs towards the optimum with nothing but sampled rewards and $\log\pi$. It lags exact
# ascent because each step follows a noisy $\hat g$; the same samples with a leave-one-out baseline
# lag much less. Lesson 02 measures why.
#
# ## Summary

# %%
# NBVAL_CHECK_OUTPUT
summary = [
    ("exact ∇J vs finite differences (max abs error)", f"< {bound:.0e}"),
    ("E[R ∇log π] by enumeration = ∇J", "< 1e-12"),
    (f"REINFORCE mean of {M} batches vs ∇J (max |z|)", f"{z.abs().max():.1f} SE"),
    ("log-log slope of the error vs n", f"{slope:.2f}"),
    ("J: start → REINFORCE after 300 steps", f"{j0:.3f} → {curves['none'][-1]:.3f}"),
    ("J: REINFORCE + leave-one-out / exact ascent", f"{curves['leave_one_out'][-1]:.3f} / {curves['exact'][-1]:.3f}"),
    ("optimum max_θ J", f"{optimum:.3f}"),
]
for claim, figure in summary:
    print(f"{claim:<48} {figure}")

# %% [markdown]
# | claim | where in the library |
# |---|---|
# | exact $J$ and $\nabla J$ of a contextual bandit | `bandits.ContextualBandit.objective`, `.exact_gradient` |
# | score-function estimator = gradient of the surrogate loss | `policy_gradient.surrogate_loss`, `reinforce_gradient` |
# | per-sample estimates (vmap over grad) | `per_sample.per_sample_grads`, `variance.baseline_estimates` |
#
# **What to try next**
# - Set `noise_std=0` in `make_bandit`: the estimator is still noisy. Where does the variance come from?
# - Add `offset=5.0` to `make_bandit` (every reward + 5): $\nabla J$ does not change — does the
#   REINFORCE learning curve? (Lesson 02 answers with numbers.)
# - Train with `torch.optim.SGD` instead of Adam and find a learning rate that matches Adam's curve.
# - Make the error-vs-$n$ plot for a nearly deterministic policy (`init_std=5.0`): same slope, smaller constant?
