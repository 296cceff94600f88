r"""REINFORCE, RLOO, GRPO and PPO side by side, at an equal sample budget, on the lesson-06 task.

Every method is one `TrainConfig` of the same trainer; they differ only in these settings. Each
sees B = P·k samples per step (more prompts when k is smaller) for the same number of steps:

| method         | k  | baseline b_ij                      | advantage                      | update per batch      |
|----------------|----|------------------------------------|--------------------------------|-----------------------|
| `vanilla_pg`   | 1  | 0                                  | R                              | one gradient step     |
| `running_mean` | 1  | EMA of past returns                | R − b                          | one gradient step     |
| `rloo_k2`      | 2  | mean of the other sample           | R − b                          | one gradient step     |
| `rloo_k4`      | 4  | mean of the other 3 samples        | R − b                          | one gradient step     |
| `grpo`         | 4  | mean of the 4, self included       | (R − mean) / (std + ε)         | one gradient step     |
| `ppo`          | 1  | learned critic V_φ(s_t) (GAE)      | whitened Â_t, clipped ratio ρ  | `ppo_epochs` steps    |

(R = r − β·KL; Ahmadian et al., 2024, compare the same family on TL;DR.) `run_method` trains one
method from a fresh copy of the model and returns its learning curve (gold and proxy reward against
samples seen, KL), a held-out evaluation, and its cost: seconds per step and memory — the peak
during training (`reinforce_edu.perf.measure.PeakMemory`) above the memory in use before the trainer was
built, i.e. everything the method holds (policy copy, π_ref, critic, optimiser state) plus its
activations. `summarise` gives each method's mean and standard error over seeds. Memory is a noisy meter on
a CPU: the first run in a process also pays one-time allocations (lesson 07's stored run: vanilla PG's
seed 0, +1604 MiB against +1152 and +1171 for its later seeds), and the heap of one long process grows
from run to run, so a method's RSS rise depends on where in the sequence it ran. `summarise` leaves out
the first run of the process and reports the mean ± SE over the rest; two methods' memory is compared
within a seed round (`paired_memory_gap`), where the drift cancels.

Taught in notebooks/07_comparison.ipynb; `scripts/full_comparison.py` runs it at a larger size.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import statistics
import tempfile
import time
from itertools import count

import torch

from reinforce_edu.core._checks import check_choice, check_positive_int
from reinforce_edu.perf.measure import PeakMemory, release_memory, rss_bytes
from reinforce_edu.llm.trainer import TrainConfig, Trainer
from reinforce_edu.perf.precision import resolve_device

METHODS: dict[str, dict] = {
    "vanilla_pg": dict(samples_per_prompt=1, baseline="none"),
    "running_mean": dict(samples_per_prompt=1, baseline="running_mean"),
    "rloo_k2": dict(samples_per_prompt=2, baseline="rloo"),
    "rloo_k4": dict(samples_per_prompt=4, baseline="rloo"),
    "grpo": dict(samples_per_prompt=4, baseline="prompt_mean", advantage_scale="group_std"),
    "ppo": dict(samples_per_prompt=1, baseline="none", method="ppo"),
}
"""The TrainConfig settings that define each method (everything else is shared)."""

_RUN_INDEX = count()
"""How many `run_method` calls this process made before the current one (0: the first pays one-time allocations)."""

LABELS = {"vanilla_pg": "vanilla PG", "running_mean": "REINFORCE + running mean", "rloo_k2": "RLOO k=2",
          "rloo_k4": "RLOO k=4", "grpo": "GRPO (std-normalised)", "ppo": "PPO (critic)"}


def method_config(name: str, samples_per_step: int, **settings) -> TrainConfig:
    """The TrainConfig of method `name` with B = `samples_per_step` samples per step (P = B / k prompts).

    settings: any other TrainConfig fields, shared by every method (steps, learning_rate, beta, ...).
    """
    check_choice(name, "method", tuple(METHODS))
    B = check_positive_int(samples_per_step, "samples_per_step")
    k = METHODS[name]["samples_per_prompt"]
    if B % k:
        raise ValueError(f"samples_per_step={B} must be a multiple of k={k} (method {name!r})")
    # every method's step-t prompts are the first B/k of one shared set of B (prompt_stride = B), so the
    # methods start from the same prompts, not prompts 0.1 apart in gold reward
    values = {"prompt_stride": B, **settings, **METHODS[name], "prompts_per_step": B // k}
    return dataclasses.replace(TrainConfig(), **values)


def run_method(name: str, seed: int, *, samples_per_step: int, policy, tokenizer, prompts: list[str],
               eval_prompts: list[str] | None = None, eval_seed: int = 12345, reward_fn=None, gold_fn=None,
               **settings) -> dict:
    """Train method `name` (seed `seed`) from a copy of `policy`; return its curve, evaluation and cost.

    policy, tokenizer: the starting model (copied, never modified). prompts: training prompts;
    eval_prompts: held-out prompts, one sample each with a fixed seed after training (None: no eval).
    Returned dict: name, seed, config, curve (one dict per step: samples_seen, gold, proxy, kl,
    step_time), s_per_step (mean), seconds (all steps), peak_memory (bytes: the peak while training)
    and memory_rise (that peak minus the memory in use before the trainer was built; `PeakMemory.kind`
    in memory_kind), run_index (its place among this process's runs: 0 = the first) and eval
    (gold, gold_se, proxy, length) if asked.
    """
    cfg = method_config(name, samples_per_step, seed=seed, progress=False,
                        output_dir=settings.pop("output_dir", None) or tempfile.mkdtemp(prefix=f"cmp_{name}_"),
                        **settings)
    device = resolve_device(cfg.device)
    release_memory()
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else (rss_bytes() or 0)
    trainer = Trainer(cfg, policy=copy.deepcopy(policy), tokenizer=tokenizer, prompts=prompts,
                      reward_fn=reward_fn, gold_fn=gold_fn)
    with PeakMemory(device, release=False) as mem:  # the peak while training, models included
        start = time.perf_counter()
        history = trainer.train()
        seconds = time.perf_counter() - start
    B = cfg.prompts_per_step * cfg.samples_per_prompt
    curve = [{"samples_seen": r["step"] * B, "gold": r["gold_reward"], "proxy": r["proxy_reward"], "kl": r.get("kl"),
              "step_time": r["step_time"]} for r in history]
    out = {"name": name, "seed": seed, "config": dataclasses.asdict(cfg), "curve": curve,
           "seconds": seconds, "s_per_step": seconds / len(history), "peak_memory": mem.peak,
           "memory_rise": max(0, mem.peak - before), "memory_kind": mem.kind, "skipped": trainer.n_skipped,
           "run_index": next(_RUN_INDEX)}
    if eval_prompts:
        ev = trainer.evaluate(eval_prompts, k=1, seed=eval_seed)
        out["eval"] = {key: ev[key] for key in ("gold", "gold_se", "proxy", "proxy_se", "length")}
    del trainer
    release_memory()
    return out


def _mean_se(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan"))


def _memory_runs(runs: list[dict]) -> list[dict]:
    """The runs whose memory counts: all but a process's first run (run_index 0), unless that is all there is."""
    later = [r for r in runs if r.get("run_index") != 0]
    return later or runs


def summarise(results: list[dict], last: int = 3) -> dict[str, dict]:
    """Per method, mean and standard error over its seeds of: held-out gold (eval), training gold and KL
    (mean of the last `last` steps), seconds per step, memory rise and peak (leaving out the process's
    first run, which also pays one-time allocations). Keys keep METHODS' order."""
    out: dict[str, dict] = {}
    for name in [n for n in METHODS if any(r["name"] == n for r in results)]:
        runs = [r for r in results if r["name"] == name]
        tail = lambda r, key: statistics.fmean(c[key] for c in r["curve"][-last:] if c[key] is not None)
        row = {"label": LABELS[name], "seeds": len(runs)}
        for key, values in (("eval_gold", [r["eval"]["gold"] for r in runs if "eval" in r]),
                            ("train_gold", [tail(r, "gold") for r in runs]),
                            ("train_proxy", [tail(r, "proxy") for r in runs]),
                            ("kl", [tail(r, "kl") for r in runs]),
                            ("s_per_step", [r["s_per_step"] for r in runs])):
            row[key], row[key + "_se"] = _mean_se(values)
        for key in ("memory_rise", "peak_memory"):
            row[key], row[key + "_se"] = _mean_se([r[key] for r in _memory_runs(runs)])
        out[name] = row
    return out


def paired_memory_gap(results: list[dict], a: str, b: str) -> tuple[float, float, int]:
    """Memory rise of method `a` minus method `b`, paired by seed (the two ran in the same seed round, so the
    process's heap drift cancels), process-first runs left out: (mean gap in bytes, its SE, pairs used)."""
    rise = {(r["name"], r["seed"]): r["memory_rise"] for r in results if r.get("run_index") != 0}
    gaps = [rise[(a, s)] - rise[(b, s)] for (n, s) in list(rise) if n == a and (b, s) in rise]
    mean, se = _mean_se(gaps)
    return mean, se, len(gaps)


def mean_curve(results: list[dict], name: str, key: str = "gold") -> tuple[list[int], list[float], list[float]]:
    """(samples seen, mean over seeds, standard error over seeds) of a curve key for one method."""
    runs = [r for r in results if r["name"] == name]
    n = min(len(r["curve"]) for r in runs)
    xs = [runs[0]["curve"][i]["samples_seen"] for i in range(n)]
    stats = [_mean_se([r["curve"][i][key] for r in runs]) for i in range(n)]
    return xs, [m for m, _ in stats], [s for _, s in stats]


def plot_curves(results: list[dict], key: str = "gold", ax=None, smooth: int = 1, label_suffix: str = "",
                linestyle: str = "-"):
    """Mean curve per method (± 1 SE band) of `key` against samples seen. smooth: moving-average window."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for i, name in enumerate(n for n in METHODS if any(r["name"] == n for r in results)):
        xs, mean, se = mean_curve(results, name, key)
        if smooth > 1:
            avg = lambda v: [statistics.fmean(v[max(0, j - smooth + 1):j + 1]) for j in range(len(v))]
            mean, se = avg(mean), avg([s if math.isfinite(s) else 0.0 for s in se])
        color = f"C{i}"
        ax.plot(xs, mean, linestyle, color=color, label=LABELS[name] + label_suffix)
        ax.fill_between(xs, [m - s for m, s in zip(mean, se)], [m + s for m, s in zip(mean, se)], color=color,
                        alpha=0.12)
    ax.set_xlabel("samples seen")
    ax.set_ylabel(f"{key}: mean over seeds (band ± 1 SE)")
    return ax
