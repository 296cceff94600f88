# %% [markdown]
# # 00 · The big picture: where REINFORCE sits in RLHF
#
# **What you will learn**
# - the three stages of RLHF — supervised fine-tuning (SFT), a reward model, and policy-gradient
#   fine-tuning — and which one this course is about;
# - the one equation every later lesson measures, corrects and scales up;
# - the map of the course: lesson → concept → library module;
# - how the lessons are run and how their claims are tested.
#
# The source text we teach (and check) is the seed note *REINFORCE* (Williams, 1992; Ahmadian et al., 2024).
# Two lines of its `reinforce_loss` are wrong; lessons 02 and 04 measure by how much.

# %% [markdown]
# ## 1. The pipeline
#
# | stage | what it produces | in this course |
# |---|---|---|
# | 1. SFT | a policy $\pi_\theta$ that already writes fluent answers | the warm-up of lesson 03; SmolLM2-135M-**Instruct** in 05–07 |
# | 2. Reward model | a score $r(x, y)$ for prompt $x$ and answer $y$ | lesson 05 (Bradley–Terry) |
# | 3. REINFORCE | $\pi_\theta$ pushed toward high reward, held near $\pi_\text{ref}$ | lessons 01–04 (exact, small), 06–07 (real LLM) |
#
# Stage 3 maximises the KL-regularised return
#
# $$J(\theta) = \mathbb{E}_{x,\; y\sim\pi_\theta(\cdot|x)}\big[r(x,y)\big] \;-\; \beta\,\mathrm{KL}\big(\pi_\theta(\cdot|x)\,\|\,\pi_\text{ref}(\cdot|x)\big)$$
#
# and REINFORCE follows its gradient with the **score-function estimator**
#
# $$\nabla_\theta J \approx \frac1n\sum_{i=1}^n \big(R_i - b_i\big)\,\nabla_\theta \log\pi_\theta(y_i|x_i),$$
#
# no critic, no value network: the reward flows back through $\log\pi_\theta$. The whole policy loss is
# one line (`reinforce_edu.core.policy_gradient.surrogate_loss`):
# `loss = -(logp * advantages.detach()).mean()`.

# %%
import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

fig, ax = plt.subplots(figsize=(9, 2.2))
stages = [("pre-trained LM", "#dddddd"), ("1. SFT\npolicy π_θ", "#cfe2f3"),
          ("2. reward model\nr(x, y)", "#fce5cd"), ("3. REINFORCE\nmax E[r] − β·KL", "#d9ead3")]
for i, (label, colour) in enumerate(stages):
    ax.add_patch(FancyBboxPatch((i * 2.5, 0), 1.9, 1, boxstyle="round,pad=0.08", fc=colour, ec="black"))
    ax.text(i * 2.5 + 0.95, 0.5, label, ha="center", va="center", fontsize=10)
    if i:
        ax.annotate("", xy=(i * 2.5 - 0.1, 0.5), xytext=(i * 2.5 - 0.5, 0.5), arrowprops=dict(arrowstyle="->", lw=2))
ax.annotate("frozen copy: π_ref", xy=(8.2, 1.1), xytext=(2.9, 1.5), fontsize=9,
            arrowprops=dict(arrowstyle="->", color="grey", connectionstyle="arc3,rad=-0.2"))
ax.set_xlim(-0.3, 9.7); ax.set_ylim(-0.3, 1.9); ax.axis("off")
ax.set_title("RLHF in three stages — this course is about stage 3")
plt.show()

# %% [markdown]
# ## 2. The course map
#
# | lesson | concept | setting | library module | minutes, 2-core AMD Zen 3 (fp32) / Intel AMX (bf16) |
# |---|---|---|---|---|
# | 00_big_picture | the pipeline, the course, the tools | – | – | 0.1 / 0.1 |
# | 01_bandits_policy_gradient | score-function estimator vs the exact gradient | contextual bandit | `bandits`, `policy_gradient` | 0.2 / 0.1 |
# | 02_baselines_and_variance | baselines, bias, variance, interactive explorer | contextual bandit | `baselines`, `per_sample`, `variance`, `explorer` | 0.5 / 0.2 |
# | 03_credit_assignment | token- vs sequence-level credit, aggregation | toy sequence policy | `toy.sequences`, `credit` | 0.4 / 0.2 |
# | 04_kl_and_reference | KL penalty, k1/k2/k3, the seed's faults | toy sequence policy | `kl`, `losses` | 0.5 / 0.2 |
# | 05_reward_model | Bradley–Terry reward model | SmolLM2-135M | `models`, `rewards`, `reward_model` | 1.9 / 0.3 |
# | 06_rlhf_small_llm | REINFORCE/RLOO fine-tuning, variance on a real LLM | SmolLM2-135M | `generation`, `trainer`, `train` | 3.7 / 2.1 |
# | 07_comparison | REINFORCE vs RLOO vs GRPO vs PPO: reward, KL, speed, memory | SmolLM2-135M | `ppo`, `comparison`, `measure` | 7.1 / 4.2 |
# | 08_verifiable_rewards | verifiable 0/1 rewards: pass@k, zero-variance groups, GRPO vs Dr. GRPO vs DAPO | SmolLM2-135M on checkable tasks | `passk`, `groups`, `tasks`, `verifiable` | 2.9 / – |
#
# The AMD EPYC Zen 3 has no native bf16, so the lessons compute in fp32 there (section 3); the Intel figures
# for 06 and 07 were measured at their earlier, larger CPU settings. The README has the table per CPU kind.
#
# Each lesson adds one idea to the last and imports the library rather than re-implementing it: the same
# `reinforce_loss` and baselines serve the bandit, the toy sequences and the real LLM.

# %% [markdown]
# ## 3. Your environment
#
# Everything runs on a laptop CPU; a GPU is used when present (lesson 06 scales up on its own). The README's
# "Run it on a GPU" section has the commands for a hosted notebook with a GPU.

# %%
import os
import platform

import torch

import reinforce_edu

device = "cuda" if torch.cuda.is_available() else "cpu"
print(f"python        {platform.python_version()}")
print(f"torch         {torch.__version__}")
print(f"reinforce_edu {reinforce_edu.__version__}")
print(f"device        {device}" + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else ""))
print(f"CPU threads   {torch.get_num_threads()} of {os.cpu_count()} cores")

# %% [markdown]
# **Which precision will the lessons compute in?** Mixed precision (bf16 autocast: matmuls in 16-bit
# numbers, weights and log-probs in fp32) pays only where the hardware multiplies bf16 natively: a CPU
# with AMX or AVX512-BF16 runs a bf16 matmul 2–3× faster than fp32, but a CPU with AVX2 only (AMD Zen 2/3,
# Intel Core before AVX512-BF16, many ARM chips) emulates it and runs it ~100× *slower*. So the library
# does not assume: `precision.choose_precision` times a small matmul in both (once per process, well
# under a second) and picks bf16 only where it is at least 1.2× faster. Lessons 05–07 and the trainer
# use this choice (`dtype="auto"`); on a GPU it is bf16 where the GPU has it, else fp16 with loss scaling.

# %%
from reinforce_edu.perf.precision import choose_precision, cpu_matmul_probe

probe = cpu_matmul_probe()  # this machine, this many threads
print(f"{probe['n']}x{probe['n']} matmul: fp32 {probe['fp32_gflops']:.1f} GFLOP/s, bf16 {probe['bf16_gflops']:.1f} "
      f"GFLOP/s, so bf16 runs {probe['bf16_speedup']:.2g}x the fp32 speed here ({probe['seconds']:.2f} s to measure)")
chosen = choose_precision("cpu", probe=probe, verbose=False)
print(f"lessons 05-07 will compute in {chosen.name} on the CPU")

# %% [markdown]
# **Is this torch new enough?** The library declares the oldest torch it works with (in `pyproject.toml`),
# not one exact version: any newer torch, a GPU notebook's own CUDA build included, will do. The versions
# installed here are printed above; the check below compares them with that floor.

# %%
# NBVAL_CHECK_OUTPUT
from reinforce_edu.perf.provenance import torch_meets, torch_requirement

need = torch_requirement()  # e.g. ">=2.6"
print(f"reinforce_edu {reinforce_edu.__version__} needs torch{need}")
assert torch_meets(need), (f"torch {torch.__version__} is older than torch{need}: `pip install -U torch`, "
                           "or `make setup` for the exact versions the lessons were executed with")
print("the installed torch meets it")

# %% [markdown]
# ## 4. REINFORCE in ten lines, as a teaser
#
# One prompt, three answers worth 0, 1 and 2. The policy starts uniform. Sample, score, push up the
# log-probability of what scored above average — and the best answer takes over. Lesson 01 derives why
# this works; lesson 02 why the baseline (here: leave-one-out) matters.

# %%
from reinforce_edu.toy.bandits import ContextualBandit
from reinforce_edu.core.baselines import LeaveOneOutBaseline
from reinforce_edu.core.policy_gradient import surrogate_loss

bandit = ContextualBandit(torch.tensor([[0.0, 1.0, 2.0]]), noise_std=0.5)
policy = bandit.make_policy()                      # uniform: π = (1/3, 1/3, 1/3)
optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)
baseline, gen = LeaveOneOutBaseline(), torch.Generator().manual_seed(0)
for step in range(100):
    batch = bandit.sample_batch(policy, k=8, generator=gen)                  # prompts (1,), actions/rewards (1, 8)
    adv = batch.rewards - baseline(batch.rewards)                            # A = R − b
    loss = surrogate_loss(policy.log_prob(batch.prompts, batch.actions), adv)  # −mean(log π · A)
    optimizer.zero_grad(); loss.backward(); optimizer.step()
p_best = float(policy.probs()[0, 2])

# %%
# NBVAL_CHECK_OUTPUT
print(f"P(best answer): start 0.333, after 100 REINFORCE steps {p_best:.2f}")
assert p_best > 0.9

# %% [markdown]
# ## 5. How lessons are run and tested
#
# - `make notebooks` executes every lesson in order (a fresh kernel each) and stores the outputs; it prints
#   the time each lesson took. `make lab` opens them in JupyterLab.
# - `make test` runs the library's tests and re-runs every lesson. Each lesson prints its measured figures,
#   rounded, and asserts what it claims: a re-run must run every cell and print the same figures as the stored
#   notebook, so a claim such as "P(best answer) reaches 0.99" is re-measured and checked every time.
#   Plots are never compared: a plot alone proves nothing, so the number it shows is printed too.
#
# *Note for instructors*: the re-run is `pytest --nbval-lax`; the compared cells carry a `# NBVAL_CHECK_OUTPUT`
# first line, and timings, memory addresses and progress bars are masked by `tests/nbval_sanitize.cfg`.
#
# ## Summary
#
# | figure | value |
# |---|---|
# | stages of RLHF | SFT → reward model → REINFORCE |
# | REINFORCE teaser: P(best answer) after 100 steps | 0.99 (from 0.333) |
#
# **What to try next**: set `noise_std=2.0` or drop the baseline (`adv = batch.rewards`) in the teaser and
# watch the learning slow down — then open lesson 01, which makes that precise.
