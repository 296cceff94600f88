# %% [markdown]
# # 05 · The reward model: learning $r(x, y)$ from preferences
#
# **What you will learn**
# - why RLHF learns its reward from **comparisons** ("this answer is better than that one"), and the
#   **Bradley–Terry** model $P(y_c \succ y_r \mid x) = \sigma\big(r(x, y_c) - r(x, y_r)\big)$;
# - its loss $-\log\sigma(\Delta r)$, its gradient, and why only reward **differences** can be learned;
# - a cheap reward model on a real LLM: features from a **frozen SmolLM2-135M** + a **linear head**
#   (577 trained numbers), fitted in a second;
# - how to **grade** a reward model: held-out pairwise accuracy, agreement with the gold scorer,
#   and **calibration** (does "80 % sure" mean right 80 % of the time?);
# - where the learned reward and the gold scorer disagree — the gap that RL will push on in lesson 06.
#
# This is stage 2 of the seed's pipeline (SFT → **reward model** → REINFORCE): the seed says
# "Score completions: $r(x, y)$" and moves on. Here we build that scorer and measure it.

# %% [markdown]
# ## 1. The task, the gold scorer and the data
#
# **Task:** make SmolLM2-135M-Instruct's short answers more **positive**. In real RLHF, people compare
# pairs of answers. Here a fixed, offline **gold scorer** plays the people: VADER's compound
# sentiment score in $[-1, 1]$ (`reinforce_edu.llm.rewards.gold_reward`). The RL policy will never see the
# gold scorer; it sees only a reward model **learned from pairs** the gold scorer ranked. The gold
# scorer stays on the side as the judge of whether that worked.
#
# `scripts/make_data.py` made the data once (see `data/README.md`): 400 prompts (8 templates × 50
# topics; 10 topics held out), 4 answers per prompt **sampled from SmolLM2 itself**, and for each prompt
# every pair of answers whose gold scores differ by at least 0.3, labelled chosen/rejected. Sampling
# from the model we will fine-tune keeps the reward model **in distribution**: it is trained on the
# kind of text it will have to score.

# %%
import json
import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from reinforce_edu.core.significance import paired_difference
from reinforce_edu.llm.data import load_completions, load_preferences
from reinforce_edu.llm.models import load_model
from reinforce_edu.llm.reward_model import (HEAD_FILE, RewardHead, RewardModel, bradley_terry_loss, pair_features,
                                        read_head, train_head)

torch.set_num_threads(1)  # one thread: fastest on a shared CPU, and the same numbers on every run
start = time.perf_counter()

train_pairs, heldout_pairs = load_preferences("train"), load_preferences("heldout")
heldout_answers = load_completions("heldout")  # every sampled held-out answer, with its gold score

# %%
# NBVAL_CHECK_OUTPUT
print(f"{len(train_pairs)} train pairs, {len(heldout_pairs)} held-out pairs (topics never seen in training), "
      f"{len(heldout_answers)} held-out answers")
example = train_pairs[0]
print("prompt:  ", example["prompt"])
print(f"chosen   (gold {example['chosen_gold']:+.2f}):", example["chosen"][:110])
print(f"rejected (gold {example['rejected_gold']:+.2f}):", example["rejected"][:110])

# %% [markdown]
# ## 2. Bradley–Terry: from comparisons to a reward
#
# Suppose every answer $y$ to a prompt $x$ has a hidden quality $r(x, y)$, and a labeller who compares
# two answers judges each one as its quality plus independent noise. If that noise follows a Gumbel
# distribution, the difference of two noises is **logistic**, and the labeller prefers $y_c$ to $y_r$
# with probability
#
# $$P(y_c \succ y_r \mid x) = \frac{e^{r(x,y_c)}}{e^{r(x,y_c)} + e^{r(x,y_r)}} = \sigma\big(r(x,y_c) - r(x,y_r)\big),
#   \qquad \sigma(z) = \frac{1}{1+e^{-z}}.$$
#
# This is the Bradley–Terry model (1952), the same one behind chess Elo ratings. Fitting $r_\phi$ by
# maximum likelihood on $N$ labelled pairs means minimising
#
# $$\mathcal L(\phi) = -\frac1N\sum_{i=1}^N \log\sigma\big(r_\phi(x_i,y_{c,i}) - r_\phi(x_i,y_{r,i})\big)
#   = \frac1N\sum_i \operatorname{softplus}\big(r_\phi(x_i,y_{r,i}) - r_\phi(x_i,y_{c,i})\big).$$
#
# Three facts to keep:
# - **Gradient.** With $\Delta = r_c - r_r$: $\;\partial\mathcal L/\partial r_c = -\sigma(-\Delta)/N = -(1 - P(y_c\succ y_r))/N$.
#   Pairs the model already ranks confidently barely move it; pairs it gets wrong pull hardest.
# - **Only differences are identified.** $r + c$ gives the same loss for any constant $c$ (even a
#   different $c$ per prompt). A reward model's zero point means nothing; RL's baselines (lesson 02)
#   remove it anyway. `train_head` centres the rewards on the training answers, for readability.
# - **Linear head = logistic regression.** With $r = w^\top\phi(x,y) + b$, $\Delta = w^\top(\phi_c - \phi_r)$:
#   logistic regression without intercept on feature differences. The loss is convex: a unique optimum.
#
# `reinforce_edu.llm.reward_model.bradley_terry_loss` is one line, `softplus(r_rejected - r_chosen).mean()`
# (softplus does not overflow for large gaps). Check it against the formula, the gradient and the shift:

# %%
# NBVAL_CHECK_OUTPUT
r_c = torch.tensor([2.0, 0.0, -1.0], requires_grad=True)
r_r = torch.tensor([0.0, 0.0, 1.0])
loss = bradley_terry_loss(r_c, r_r)
by_hand = -sum(math.log(1 / (1 + math.exp(-d))) for d in (2.0, 0.0, -2.0)) / 3
loss.backward()
shifted = bradley_terry_loss(r_c.detach() + 5.0, r_r + 5.0)
print(f"loss {loss.item():.4f} = by hand {by_hand:.4f}")
print("dL/dr_c", [round(g, 4) for g in r_c.grad.tolist()], "= -sigmoid(-delta)/N",
      [round(-1 / (1 + math.exp(d)) / 3, 4) for d in (2.0, 0.0, -2.0)])
print(f"every reward + 5: loss {shifted.item():.4f} (unchanged)")
assert abs(loss.item() - by_hand) < 1e-6 and abs(shifted.item() - loss.item()) < 1e-6
assert torch.allclose(r_c.grad, -torch.sigmoid(-torch.tensor([2.0, 0.0, -2.0])) / 3)

# %% [markdown]
# ## 3. Features from a frozen SmolLM2
#
# A reward model is usually the SFT model with its vocabulary head replaced by a scalar head, all
# fine-tuned. On a 2-core laptop we keep the language model **frozen** and train only the head:
#
# $$\phi(x, y) = \frac{1}{|y|}\sum_{t \in y} h^{(16)}_t(x, y) \in \mathbb R^{576}, \qquad
#   r(x, y) = w^\top\,\frac{\phi(x,y) - \mu}{s} + b,$$
#
# the hidden states after **layer 16 of 30**, averaged over the answer's tokens, with the prompt in
# front (`"prompt\nanswer"`). $\mu, s$ standardise each coordinate (hidden states have a few huge ones).
# Why the middle and not the top? A common reading is that middle layers of a language model hold the
# most linearly readable "what is this text about, how does it feel" information, while the top layers
# specialise in predicting the next token; section 4 measures it, layer by layer. Two free gifts: the forward pass **stops after layer 16**
# (`RewardModel` ends it with a hook), half the cost; and because the backbone is frozen, lesson 06
# **shares it with the frozen reference policy** $\pi_{\text{ref}}$: no second model in memory.
#
# The backbone only runs forward, so we load it in the precision this machine computes fast
# (`dtype="auto"`, lesson 00: bf16 where the CPU multiplies bf16 natively, else fp32 — the line printed
# below says which, and why); features are cast to fp32 before the head. Each distinct (prompt, answer) goes through the model once; then the
# head trains on the cached features, as often as we like, in a fraction of a second.

# %%
backbone, tokenizer = load_model(dtype="auto")  # prints the precision chosen for this CPU and why
reward_model = RewardModel(backbone, tokenizer)  # head untrained: zero weights
print(f"features: layer {reward_model.layer} of {backbone.config.num_hidden_layers}, "
      f"{reward_model.pooling} over the answer's tokens, {backbone.config.hidden_size} numbers")

t0 = time.perf_counter()
train_c, train_r = pair_features(reward_model, train_pairs)  # (N, 576) each
heldout_phi = reward_model.features([a["prompt"] for a in heldout_answers],
                                    [a["completion"] for a in heldout_answers])  # (320, 576)
row = {(a["prompt"], a["completion"]): i for i, a in enumerate(heldout_answers)}
held_c = heldout_phi[[row[(p["prompt"], p["chosen"])] for p in heldout_pairs]]    # (M, 576)
held_r = heldout_phi[[row[(p["prompt"], p["rejected"])] for p in heldout_pairs]]  # (M, 576)
print(f"features of {len(train_c) + len(held_c)} pairs and {len(heldout_answers)} answers in "
      f"{time.perf_counter() - t0:.0f} s")

# %% [markdown]
# ## 4. Training the head
#
# `train_head`: full-batch Adam on $\mathcal L$ plus a small L2 penalty $\tfrac{0.3}{2}\|w\|^2$, 300 steps,
# starting from $w = 0$ — so the first loss is exactly $\log 2 = 0.693$ (every pair a coin flip), and the
# run is deterministic. We also track the loss on the held-out pairs.

# %%
head = RewardHead(backbone.config.hidden_size)
curves = train_head(head, train_c, train_r, eval_chosen=held_c, eval_rejected=held_r)

fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(curves["train_loss"], label="train pairs")
ax.plot(curves["eval_loss"], label="held-out pairs")
ax.axhline(math.log(2), color="grey", ls=":", label="log 2 (chance)")
ax.set(xlabel="Adam step (full batch)", ylabel="Bradley–Terry loss", title="Training the reward head")
ax.legend()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
with torch.no_grad():
    train_acc = (head(train_c) > head(train_r)).float().mean().item()
    held_delta = head(held_c) - head(held_r)  # (M,) r(chosen) - r(rejected)
held_acc = (held_delta > 0).float().mean().item()
print(f"loss: start {curves['train_loss'][0]:.3f}, train {curves['train_loss'][-1]:.2f}, "
      f"held-out {curves['eval_loss'][-1]:.2f}")
print(f"pairwise accuracy: train {train_acc:.2f}, held-out {held_acc:.2f}  (chance 0.50)")
assert abs(curves["train_loss"][0] - math.log(2)) < 1e-6
assert abs(curves["train_loss"][-1] - curves["train_loss"][-50]) < 1e-3, "converged"
assert curves["train_loss"][-1] < curves["eval_loss"][-1], "fits its own pairs better: mild overfitting"
assert held_acc > 0.7, "the reward model ranks most unseen pairs like the gold scorer"
assert train_acc > held_acc, "and, like every model, fits its training pairs better"

# %% [markdown]
# Adam with a large step wobbles for a few dozen steps, then both curves go flat: the loss is convex
# in $w$, so there is one optimum and the run reaches it. The held-out loss settles well above the
# training loss: 577 parameters fitted on about a thousand pairs overfit a little, and the L2 penalty
# keeps that in check (the dip during the early wobble is luck, not a better model). About 4 in 5
# unseen pairs, on topics never seen in training, are ranked the way the gold scorer ranks them.
#
# **Which layer reads best?** The claim of section 3, measured: one head per layer, each fitted exactly as
# above on the same train pairs, scored on the same held-out pairs. Reading every layer needs the whole
# forward pass for every answer, about twice this lesson's feature pass, so `scripts/reward_layers.py` ran it
# once (fp32, one pass with every layer's hidden states) and stored `data/results/reward_layers.json`; the
# SE is binomial over the held-out pairs, and the differences between layers are paired (same pairs).

# %%
layer_run = json.loads(Path("../data/results/reward_layers.json").read_text())
layers, layer_acc, layer_se = layer_run["layers"], layer_run["accuracy"], layer_run["accuracy_se"]
layer_correct = torch.tensor([[int(c) for c in row] for row in layer_run["correct"]],
                             dtype=torch.float64)  # (L, M): 1 = ranked like the gold scorer
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.errorbar(layers, layer_acc, yerr=layer_se, fmt="o-", capsize=2)
ax.axvline(reward_model.layer, color="grey", ls=":", label=f"layer {reward_model.layer} (this lesson)")
ax.set(xlabel="layer whose hidden states the head reads", ylabel="held-out pairwise accuracy",
       title="A linear head per layer (± 1 SE)")
ax.legend()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
best = int(torch.tensor(layer_acc).argmax()) + 1
mid, top = reward_model.layer, layers[-1]


def paired(a: int, b: int) -> tuple[float, float]:  # accuracy of layer a minus layer b on the same pairs, ± SE
    p = paired_difference(layer_correct[a - 1].tolist(), layer_correct[b - 1].tolist(), (f"layer {a}", f"layer {b}"))
    return p.mean, p.se


print(f"{layer_run['heldout_pairs']} held-out pairs; accuracy ± SE by layer:")
for lo in range(0, len(layers), 10):
    print("  " + "  ".join(f"{l:>2}: {a:.2f}±{s:.2f}" for l, a, s in zip(layers[lo:lo + 10], layer_acc[lo:lo + 10],
                                                                       layer_se[lo:lo + 10])))
print(f"best layer {best}: {layer_acc[best - 1]:.3f}; this lesson's layer {mid}: {layer_acc[mid - 1]:.3f} "
      f"(section 4 above: {held_acc:.2f})")
for a, b in ((best, mid), (mid, top), (mid, 1)):
    m, s = paired(a, b)
    print(f"layer {a} − layer {b}: {m:+.3f} ± {s:.3f} ({abs(m) / s if s else 0:.1f} SE)")
assert 13 <= best <= 19 and layer_acc[best - 1] - layer_acc[mid - 1] < 0.01  # the best layers are the middle ones
assert abs(held_acc - layer_acc[mid - 1]) < 0.02  # the stored run agrees with this lesson's head
m_top, s_top = paired(mid, top)
m_one, s_one = paired(mid, 1)
assert m_top > 2.5 * s_top  # the middle beats the last layer (about 3 SE) ...
assert abs(m_one) < 3 * s_one  # ... but not resolved against the very first layer

# %% [markdown]
# The claim holds only in part. The best layers are indeed in the middle (13–19), and the middle beats the
# **last** layer by about 0.07 (close to 3 SE). But every layer reads this reward well: even layer 1, the mean of
# barely-processed token states, ranks about 77 % of the pairs right, and the middle is not resolved
# against it with 267 pairs. No surprise once the gold scorer is known: VADER scores words from a lexicon,
# so the mean over the answer's tokens of almost any layer carries it. A reward that needs reading the
# whole answer (is it correct? does it follow the instruction?) would be the test of where the readable
# features live; this one cannot separate the layers by much.

# %% [markdown]
# ## 5. Agreement with the gold scorer
#
# Pairwise accuracy only uses the pairs with a clear gold gap (at least 0.3). Two wider views, on
# **all** 320 held-out answers: the correlation of $r$ with the gold score, and the pairwise
# agreement over every pair of answers to the same prompt whose gold scores differ at all — near-ties
# included. And accuracy by gold gap: a good reward model should be surest where the difference is large.

# %%
with torch.no_grad():
    r_held = head(heldout_phi)  # (320,)
gold_held = torch.tensor([a["gold"] for a in heldout_answers])  # (320,)
pearson = torch.corrcoef(torch.stack([r_held, gold_held]))[0, 1].item()

same_prompt = torch.tensor([[a["prompt"] == b["prompt"] for b in heldout_answers] for a in heldout_answers])
dg = gold_held[:, None] - gold_held[None, :]  # (320, 320) gold differences
dr = r_held[:, None] - r_held[None, :]        # (320, 320) reward differences
compared = same_prompt & (dg > 0)             # each unordered pair once, gold strictly ordered
agreement = (dr[compared] > 0).float().mean().item()

gap = torch.tensor([p["chosen_gold"] - p["rejected_gold"] for p in heldout_pairs])
bins = [(0.3, 0.6), (0.6, 1.0), (1.0, 2.0)]
acc_by_gap = [(held_delta[(gap >= lo) & (gap < hi)] > 0).float().mean().item() for lo, hi in bins]

print(f"Pearson {pearson:.3f}; agreement {agreement:.3f}; accuracy by gap", [round(a, 3) for a in acc_by_gap])
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.scatter(gold_held, r_held, s=8, alpha=0.5)
ax.set(xlabel="gold score (VADER compound)", ylabel="learned reward r(x, y)",
       title=f"Held-out answers: Pearson r = {pearson:.3f}")
plt.show()

# %% [markdown]
# The agreement figures below are rounded to one decimal: counts of agreeing pairs move in steps of
# 1/457 or 1/90, and two decimals would sit on a rounding edge (the exact values are printed above). The
# correlation is printed to two decimals with its standard error, $(1-r^2)/\sqrt{n-2}$ for $n = 320$
# answers (answers to the same prompt are not independent, so read it as a lower bound on the SE).

# %%
# NBVAL_CHECK_OUTPUT
pearson_se = (1 - pearson ** 2) / math.sqrt(len(heldout_answers) - 2)
print(f"Pearson correlation, reward vs gold, 320 held-out answers: {pearson:.2f} ± {pearson_se:.2f}")
print(f"pairwise agreement, all {int(compared.sum())} same-prompt pairs (near-ties included): {agreement:.1f}")
for (lo, hi), acc in zip(bins, acc_by_gap):
    print(f"  accuracy on held-out pairs with gold gap in [{lo}, {hi}): {acc:.1f}")
assert pearson - 4 * pearson_se > 0.5 and agreement > 0.65  # a strong, resolved correlation; far from 1
assert acc_by_gap[-1] > acc_by_gap[0], "large gold differences are ranked more reliably"

# %% [markdown]
# The vertical stripe at gold 0: answers without a single word in VADER's lexicon, which it scores
# exactly 0. The reward model still spreads them out, by what SmolLM2's features make of them; for
# the gold scorer they are ties among themselves, so no pair of two of them was ever labelled.
#
# ## 6. Calibration: is "80 % sure" right 80 % of the time?
#
# The Bradley–Terry model does not only rank; it predicts a **probability**
# $\hat p = \sigma(r_1 - r_2)$ that answer 1 beats answer 2. It is **calibrated** if, among all pairs
# where it says $\hat p \approx 0.8$, answer 1 really wins about 80 % of the time. To test it we show
# each held-out pair in a random order (fixed seed), so $\hat p$ spreads over $[0, 1]$, put the pairs
# in 10 bins of $\hat p$, and compare each bin's mean $\hat p$ with the observed frequency. The
# **expected calibration error** (ECE) is the bin-size-weighted mean gap. ECE moves with the choice of
# bins (between about 0.03 and 0.06 here for 5 to 15 bins), so we also measure calibration without
# bins: the factor $s$ that minimises the held-out loss $-\log\sigma(s\,\Delta r)$. A calibrated model
# needs no rescaling ($s = 1$); an overconfident one wants $s < 1$. Calibration matters for RL:
# reward **differences** drive the advantages, and a calibrated model's differences mean what they say.

# %%
flip = torch.rand(len(held_delta), generator=torch.Generator().manual_seed(0)) < 0.5
p_hat = torch.sigmoid(torch.where(flip, -held_delta, held_delta))  # P(first shown beats second)
first_won = (~flip).float()                                          # 1 if the first shown is the chosen one
edges = torch.linspace(0, 1, 11)
which = torch.bucketize(p_hat, edges[1:-1])  # bin index 0..9
centres, observed, counts = [], [], []
for b in range(10):
    in_bin = which == b
    if in_bin.any():
        centres.append(p_hat[in_bin].mean().item())
        observed.append(first_won[in_bin].mean().item())
        counts.append(int(in_bin.sum()))
ece = sum(n * abs(c - o) for n, c, o in zip(counts, centres, observed)) / sum(counts)
confidence = torch.sigmoid(held_delta.abs()).mean().item()
# the best rescaling s of the reward differences on held-out pairs: 1 = calibrated, < 1 = overconfident
scales = torch.linspace(0.05, 3.0, 2951)  # steps of 0.001
nll = torch.stack([bradley_terry_loss(s * held_delta, torch.zeros_like(held_delta)) for s in scales])
best_scale = scales[nll.argmin()].item()
print(f"ECE {ece:.3f}, best rescaling {best_scale:.3f}")

fig, ax = plt.subplots(figsize=(4.2, 4))
ax.plot([0, 1], [0, 1], color="grey", ls=":", label="perfect calibration")
ax.plot(centres, observed, "o-", label="reward model")
for c, o, n in zip(centres, observed, counts):
    ax.annotate(str(n), (c, o), textcoords="offset points", xytext=(4, -10), fontsize=7)
ax.set(xlabel="predicted P(first ≻ second) = σ(Δr)", ylabel="observed frequency",
       title=f"Reliability diagram (ECE {ece:.3f})")
ax.legend()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print(f"best rescaling of the reward differences: {best_scale:.2f}  (1 = calibrated, < 1 = overconfident)")
print(f"mean confidence {confidence:.2f} vs accuracy {held_acc:.2f}")
assert ece < 0.1, "the predicted probabilities are close to the observed frequencies"
assert 0.7 < best_scale < 1.4 and abs(confidence - held_acc) < 0.1

# %% [markdown]
# Numbers in each bin are the pairs it holds: with 267 pairs, a bin of 20 has a standard error of
# about 0.1, so small wiggles around the diagonal are noise. The model is about as confident as it is
# accurate; if anything slightly **under**-confident ($s > 1$), because the L2 penalty shrinks $w$.
# Without the penalty the head grows sure of itself on its training pairs — try `weight_decay=0`
# and watch $s$ fall below 1.
#
# ## 7. The shipped head, used in lesson 06
#
# `data/reward_head.safetensors` was made by `scripts/train_reward_model.py` with the **same**
# `fit_reward_model` → `train_head` on the same train pairs, but with fp32 features (the RL trainer
# computes them with its fp32 reference model). Lesson 06 loads it with `load_reward_model`. On this
# lesson's features (bf16 or fp32, as chosen above) it should agree with the head we just trained:

# %%
# NBVAL_CHECK_OUTPUT
shipped, meta = read_head(HEAD_FILE)
with torch.no_grad():
    shipped_acc = (shipped(held_c) > shipped(held_r)).float().mean().item()
cosine = torch.nn.functional.cosine_similarity(shipped.linear.weight, head.linear.weight).item()
print(f"shipped head: layer {meta['layer']}, {meta['pooling']} pooling, held-out accuracy {shipped_acc:.2f}")
print(f"cosine similarity of its weights with this lesson's head: {cosine:.2f}")
assert shipped_acc > 0.7 and cosine > 0.9

# %% [markdown]
# ## 8. Where the proxy and the gold scorer disagree
#
# The reward model is a **proxy**. RL maximises it, and will find the answers it over-rates. Here are
# the held-out answers the learned reward likes much more than the gold scorer does, and the reverse:

# %%
z = lambda x: (x - x.mean()) / x.std()
disagreement = z(r_held) - z(gold_held)  # > 0: the reward model over-rates the answer
for title, idx in (("over-rated by the reward model", disagreement.topk(2).indices),
                   ("under-rated by the reward model", (-disagreement).topk(2).indices)):
    print(title)
    for i in idx.tolist():
        print(f"  r {r_held[i]:+.2f}  gold {gold_held[i]:+.2f}  {heldout_answers[i]['completion'][:100]!r}")

# %% [markdown]
# ## Exercises
#
# Each exercise asks you to write, from its formula, something the library implements. While a check runs,
# the library's own version of it is unavailable, so your answer must not call `reinforce_edu`. The check
# below each answer tries your function on several inputs and says what was expected, for which input,
# which usual mistake gives exactly your answer, and what to revisit. In a class, work in the released
# assignment (`python -m reinforce_edu.teaching.assignments release DIR`): there the worked solutions below
# are stripped. (Instructors: these cells carry nbgrader markup; see the README.)

# %% nbgrader={"grade": false, "grade_id": "setup_05", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch

from reinforce_edu.teaching import exercises


# %% [markdown] nbgrader={"grade": false, "grade_id": "bradley_terry_loss_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ### Exercise 11 — the Bradley–Terry loss
#
# Given reward-model scores of the chosen and rejected answers (each `(N,)`), return the mean of
# $-\log\sigma(r_\text{chosen} - r_\text{rejected})$. It must stay finite for margins of ±100.

# %% nbgrader={"grade": false, "grade_id": "bradley_terry_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def bradley_terry_loss(r_chosen, r_rejected):
    ### BEGIN SOLUTION
    return -torch.nn.functional.logsigmoid(r_chosen - r_rejected).mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "bradley_terry_loss_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
exercises.check_bradley_terry_loss(bradley_terry_loss)
### BEGIN HIDDEN TESTS
exercises.check_bradley_terry_loss(bradley_terry_loss, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# VADER counts sentiment words; the learned reward reads SmolLM2's idea of the text's mood. Where they
# part ways, optimising the proxy will not improve the gold score — that is **reward hacking**, and why
# lesson 06 always reports the gold score next to the reward it optimises, plus the KL to $\pi_{\text{ref}}$
# (lesson 04), which keeps the policy near the text the reward model was trained on.
#
# ## Summary

# %%
# NBVAL_CHECK_OUTPUT
summary = [
    ("train / held-out pairs", f"{len(train_pairs)} / {len(heldout_pairs)}"),
    ("Bradley-Terry loss = hand formula, shift-invariant", "True"),
    ("head: trained numbers (w, b)", f"{head.linear.weight.numel() + 1}"),
    ("loss: start (log 2) / train / held-out", f"{curves['train_loss'][0]:.3f} / {curves['train_loss'][-1]:.2f} / {curves['eval_loss'][-1]:.2f}"),
    ("pairwise accuracy: train / held-out", f"{train_acc:.2f} / {held_acc:.2f}"),
    (f"held-out accuracy by layer: 1 / {mid} / {top} (stored run)",
     f"{layer_acc[0]:.2f} / {layer_acc[mid - 1]:.2f} / {layer_acc[top - 1]:.2f}"),
    ("held-out accuracy, gold gap small -> large", " / ".join(f"{a:.1f}" for a in acc_by_gap)),
    ("Pearson r vs gold, held-out answers", f"{pearson:.2f} ± {pearson_se:.2f}"),
    ("pairwise agreement, all same-prompt pairs", f"{agreement:.1f}"),
    ("calibration: best rescaling (1 = calibrated)", f"{best_scale:.2f}"),
    ("shipped head: held-out accuracy / cosine", f"{shipped_acc:.2f} / {cosine:.2f}"),
]
for claim, figure in summary:
    print(f"{claim:<52} {figure}")

# %% [markdown]
# | idea | where in the library |
# |---|---|
# | gold scorer, TRL-style reward functions, their checks | `rewards.gold_reward`, `rewards.check_rewards` |
# | prompts, sampled answers, preference pairs | `data.load_prompts`, `load_completions`, `load_preferences`; `scripts/make_data.py` |
# | Bradley–Terry loss | `reward_model.bradley_terry_loss` |
# | frozen-LLM features, linear head, training | `reward_model.RewardModel`, `RewardHead`, `train_head`, `fit_reward_model` |
# | the shipped reward model as a reward function | `load_reward_model().as_reward_fn()` |
#
# **What to try next**
# - Read the **last** layer instead: `RewardModel(backbone, tokenizer, layer=30)`, and compare with the stored
#   per-layer accuracies. Then try `pooling="last"` (the final token's state only): does the best layer move?
# - Set `weight_decay=0` in `train_head`: watch the held-out loss curve and the calibration error.
# - Train on a quarter of the pairs (`train_c[:250]`): how fast does held-out accuracy fall?
# - Drop the margin: rebuild the data with `python scripts/make_data.py --margin 0.05 --out /tmp/data`
#   and compare accuracy by gold gap. Near-ties are where labels are noise.
# - Write your own reward function with TRL's signature, `f(completions, **kwargs) -> list[float]`, that
#   returns NaN for empty answers, and see `reinforce_edu.llm.rewards.compute_rewards` stop it.

# %%
print(f"lesson time: {time.perf_counter() - start:.0f} s")
