r"""The Ahmadian et al. (2024) ordering in miniature: six methods × a strong and a weak init × many seeds.

Ahmadian et al. report, fine-tuning from an SFT model on TL;DR: RLOO k=4 > RLOO k=2 > REINFORCE with
baseline > vanilla PG > PPO, and argue that from a strong initialisation a critic is not needed. Here:

- **strong init** — the toy policy fitted by `warm_up` (supervised, 60 Adam steps) to noisy
  demonstrations of the targets (the toy's SFT); **weak init** — the random policy of the same seed;
- seed s fixes the initial weights, the demonstrations and the sampling generator, and is shared by
  the six methods: the comparison of two methods is **paired** (`core.significance`);
- every method trains from its init for `steps` batches of B samples at the init's learning rate,
  with π_ref = the init; scores are exact (`toy.methods.exact_scores`): J_β = E[r] − β·KL(π ‖ π_ref),
  and J_β(π*) = β · mean_x log Σ_y π_ref(y|x) e^{r(x,y)/β}, the best any policy can do (lesson 04).

`run_ordering` returns per-seed scores; `summarise_ordering` the means, standard errors and every
paired difference. Taught in notebooks/07_comparison.ipynb; `scripts/toy_ordering.py` stores the full run.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch

from reinforce_edu.core._checks import check_positive_int
from reinforce_edu.core.significance import all_pairs, mean_se
from reinforce_edu.toy.enumeration import Enumeration
from reinforce_edu.toy.methods import TOY_METHODS, ToyMethodConfig, exact_scores, run_toy_method
from reinforce_edu.toy.rewards import match_reward
from reinforce_edu.toy.sequences import ToyPolicy, ToyTask, demonstrations, warm_up

INITS: dict[str, dict] = {"strong": dict(lr=0.003), "weak": dict(lr=0.03)}
"""The two initialisations and the settings each trains with (a smaller step from the SFT-like init)."""

ORDERING_DEFAULTS = dict(steps=30, samples_per_step=16, beta=0.05, demo_noise=0.2, warm_up_steps=60)
"""The budget of the stored run: 30 steps of B = 16 samples, β = 0.05; the strong init's warm-up."""


def make_init(kind: str, task: ToyTask, seed: int, demo_noise: float = 0.2, warm_up_steps: int = 60) -> ToyPolicy:
    """The initial policy of seed `seed`: "weak" = random weights, "strong" = those weights after `warm_up`."""
    if kind not in INITS:
        raise ValueError(f"init must be one of {tuple(INITS)}, got {kind!r}")
    policy = ToyPolicy(task, hidden=16, seed=seed)
    if kind == "strong":
        warm_up(policy, demonstrations(task, 16, noise=demo_noise, seed=seed), steps=warm_up_steps, lr=0.03)
    return policy


def optimum(init: ToyPolicy, enum: Enumeration, rewards: torch.Tensor, beta: float) -> float:
    """J_β(π*_β) = β · mean_x log Σ_y π_ref(y|x) e^{r(x,y)/β}, with π_ref = `init`. rewards: (P, N)."""
    with torch.no_grad():
        return beta * float(torch.logsumexp(enum.seq_logprobs(init) + rewards / beta, dim=1).mean())


def run_ordering(seeds: Sequence[int], inits: Sequence[str] = tuple(INITS), methods: Sequence[str] = tuple(TOY_METHODS),
                 task: ToyTask | None = None, **settings) -> dict:
    """Train every method from every init for every seed; return per-seed exact scores.

    settings: overrides of ORDERING_DEFAULTS. Returned: {"settings": ..., init: {"J0": [per seed],
    "J_opt": [...], "methods": {name: {"J": [...], "reward": [...], "kl": [...]}}}}.
    """
    unknown = set(settings) - set(ORDERING_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; allowed: {sorted(ORDERING_DEFAULTS)}")
    s = {**ORDERING_DEFAULTS, **settings}
    if isinstance(seeds, (str, bytes)) or not seeds or any(isinstance(x, bool) or not isinstance(x, int) or x < 0
                                                          for x in seeds):
        raise ValueError(f"seeds must be a non-empty sequence of non-negative ints, got {seeds!r}")
    for name in inits:
        if name not in INITS:
            raise ValueError(f"inits must be among {tuple(INITS)}, got {name!r}")
    check_positive_int(s["steps"], "steps")
    for name in methods:
        if name not in TOY_METHODS:
            raise ValueError(f"methods must be among {tuple(TOY_METHODS)}, got {name!r}")
    task = task or ToyTask()
    enum = Enumeration(task)
    rewards = enum.rewards(match_reward)  # (P, N)
    out: dict = {"settings": {**s, "seeds": list(seeds), "inits": {k: INITS[k] for k in inits}}}
    for kind in inits:
        rec = {"J0": [], "J_opt": [], "methods": {m: {"J": [], "reward": [], "kl": []} for m in methods}}
        for seed in seeds:
            init = make_init(kind, task, seed, s["demo_noise"], s["warm_up_steps"])
            rec["J0"].append(exact_scores(init, init, enum, rewards, s["beta"])["J"])
            rec["J_opt"].append(optimum(init, enum, rewards, s["beta"]))
            cfg = ToyMethodConfig(steps=s["steps"], samples_per_step=s["samples_per_step"], beta=s["beta"],
                                  seed=seed, **INITS[kind])
            for m in methods:
                for key, v in run_toy_method(m, init, task, match_reward, enum, cfg).items():
                    rec["methods"][m][key].append(v)
        out[kind] = rec
    return out


def summarise_ordering(result: dict, z: float = 2.0) -> dict:
    """Per init: each method's mean ± SE of J, reward and KL, its share of the gap J_opt − J0 closed,
    the order by mean J, and every paired difference of J (`core.significance.all_pairs`)."""
    out = {}
    for kind in (k for k in result if k != "settings"):
        rec = result[kind]
        J0, Jopt = mean_se(rec["J0"])[0], mean_se(rec["J_opt"])[0]
        rows = {}
        for m, sc in rec["methods"].items():
            (J, J_se), (r, r_se), (kl, kl_se) = mean_se(sc["J"]), mean_se(sc["reward"]), mean_se(sc["kl"])
            rows[m] = dict(J=J, J_se=J_se, reward=r, reward_se=r_se, kl=kl, kl_se=kl_se,
                           closed=(J - J0) / (Jopt - J0))
        pairs = all_pairs({m: sc["J"] for m, sc in rec["methods"].items()}, z)
        out[kind] = dict(J0=J0, J_opt=Jopt, rows=rows, order=sorted(rows, key=lambda m: -rows[m]["J"]),
                         pairs=[dataclasses.asdict(p) | {"resolved": p.resolved} for p in pairs])
    return out
