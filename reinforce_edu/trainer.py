r"""REINFORCE / RLOO fine-tuning of a causal LM: one config, one loop, exact resume.

Each step, for P prompts and k samples of each (B = P·k rows, prompt-major):

    1. y_ij ∼ π_θ(·|x_i)                                        generation.sample  (no grad)
    2. r_ij = r_φ(x_i, y_ij)  (proxy: the reward model)           rewards.compute_rewards (checked)
    3. log π_θ(y_ij,t|·), log π_ref(y_ij,t|·)                      generation.completion_logprobs
    4. R_ij = r_ij − β·KL_ij,  A_ij = R_ij − b_ij                  losses.reinforce_loss + baselines
       L = −Σ_{i,j,t} w_ijt · A_ij · log π_θ(y_ij,t|·)
    5. g = ∇L, clipped to ‖g‖ ≤ max_grad_norm; AdamW step; baseline.update(R)

The loss, baselines and KL estimators are the very functions of lessons 01–04. The gold
reward (rewards.gold_reward) is computed on the same samples for the log only: it never
reaches the loss, so the gap between proxy and gold reward shows over-optimisation.

Safety: a non-finite log-prob, loss or gradient skips the update (weights, optimiser and
baseline untouched), is logged (`skipped`) and counted. A reward function that returns
NaN or the wrong number of values raises before anything is written for that step.
Checkpoints are written to a temporary file and renamed into place; resuming restores
weights, optimiser, RNG states, baseline and step, so an interrupted run ends exactly as
an uninterrupted one (same seed, same device).

Speed: every forward runs in the precision the hardware does fast (reinforce_edu.precision:
bf16 autocast where a CPU or GPU multiplies bf16 natively, fp16 + loss scaling on a GPU without
bf16, else fp32; log-probs are upcast to fp32 before the logsumexp); only completion positions reach the output layer; each prompt goes through the
model once, not k times, in sampling and in both scoring passes (its key/value cache is
repeated for its k samples); one no-grad pass of π_ref, and the policy's own training pass
gives log π_θ for the KL; log π, its gradient and the entropy come from one softmax
(generation.token_logprobs); on a CPU plain-matmul attention in the scoring passes and the
fused kernel in sampling, each where it is faster (`attention`); the frozen π_ref
stores its block weights in the compute dtype; a fused AdamW; freed memory stays in the process
for the next step, whose tensors then do not page-fault on fresh memory (`keep_freed_memory`,
reinforce_edu.allocator). (`torch.compile` of the blocks was measured and does not pay on a CPU:
benchmarks/torch_compile.py.) With `trainable_blocks=N` only the last N transformer blocks and the final norm
train, the frozen rest is stored in the compute dtype and the backward pass stops at block L − N.

Methods (lesson 07): `method="reinforce"` is the loop above, with any baseline and GRPO's
`advantage_scale="group_std"`; `method="ppo"` replaces step 4–5 by `ppo.ppo_update`: a critic
(a second copy of the transformer with a scalar head), GAE advantages, and `ppo_epochs` clipped
updates on each batch. Every record also logs `gen_time` (sampling seconds) and
`peak_memory_mib` (the step's peak: CUDA allocated memory, or the process's peak RSS on a CPU).

Taught in notebooks/06_rlhf_small_llm.ipynb.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from ._checks import check_choice, check_nonnegative, check_positive_int
from .allocator import keep_freed_memory
from .baselines import BASELINES, make_baseline
from .credit import AGGREGATIONS
from .generation import Rollout, check_prompts, completion_logprobs, context_length, encode_prompts, sample
from .kl import KL_ESTIMATORS, frozen_copy
from .losses import ADVANTAGE_SCALES, KL_PLACEMENTS, NonFiniteLossError, reinforce_loss
from .measure import PeakMemory
from .precision import DTYPES, Precision, choose_precision
from .ppo import ValueModel, ppo_update
from .rewards import RewardFn, compute_rewards, gold_reward

CHECKPOINT = "checkpoint.pt"
LOG = "metrics.jsonl"
CONFIG = "config.json"
PRECISION_KEY = "precision"
"""config.json holds the config's fields and, under this key, the precision "auto" chose and why."""
TIME_KEYS = ("step_time", "gen_time", "peak_memory_mib")
"""Wall-clock and memory fields of a log record: the only ones that differ between identical runs."""
METHODS = ("reinforce", "ppo")
"""`TrainConfig.method`: the REINFORCE loss (any baseline, GRPO's scaling), or PPO (reinforce_edu.ppo)."""


@dataclass
class TrainConfig:
    """Settings of one fine-tuning run (`python -m reinforce_edu.train --help` lists them)."""

    model: str = "smollm2"
    """model to fine-tune: "smollm2" (SmolLM2-135M-Instruct, offline) or a transformers folder / hub id"""
    reward: str = "reward_model"
    """proxy reward optimised: "reward_model" (lesson 05's), "gold" (the gold scorer itself) or "module:function" (TRL signature)"""
    prompts: str = "train"
    """training prompts: a data split ("train" | "heldout") or a .jsonl ({"prompt": ...} per line) / .txt (one per line) file"""
    learning_rate: float = 1e-5
    """AdamW learning rate"""
    prompts_per_step: int = 8
    """P: prompts per step"""
    samples_per_prompt: int = 4
    """k: completions sampled per prompt (B = P·k rows per step); RLOO needs k >= 2"""
    max_new_tokens: int = 32
    """longest completion, in tokens (generation stops earlier at EOS)"""
    temperature: float = 1.0
    """sampling temperature; log-probs use the same one, so the estimator stays exact"""
    baseline: str = "rloo"
    """baseline b: "none", "running_mean", "rloo" (leave-one-out), or any name of reinforce_edu.baselines.BASELINES"""
    baseline_decay: float = 0.9
    """decay of the running-mean baseline"""
    beta: float = 0.05
    """weight β of the KL penalty to the frozen reference"""
    kl_estimator: str = "k1"
    """per-token KL estimator: "k1" (log-ratio), "k2" or "k3" (lesson 04)"""
    kl_placement: str = "reward"
    """"reward": −β·KL folded (detached) into the return; "loss": β·KL added to the loss"""
    aggregation: str = "sum"
    """how token losses are averaged: "sum" (the policy-gradient theorem), "seq_mean", "token_mean", "constant" (lesson 03)"""
    advantage_scale: str = "none"
    """divide the advantages by the spread of the returns: "group_std" (GRPO, per prompt; needs k >= 2), "batch_std" or "none" (lesson 07)"""
    method: str = "reinforce"
    """"reinforce": the REINFORCE loss with the chosen baseline, one update per batch; "ppo": a learned critic, GAE and the clipped ratio, ppo_epochs updates per batch (the baseline is then unused; lesson 07)"""
    ppo_epochs: int = 2
    """PPO: optimiser steps on each batch of samples"""
    clip_range: float = 0.2
    """PPO: ε of the clipped probability ratio clip(π_θ/π_old, 1 − ε, 1 + ε)"""
    value_clip_range: float = 0.2
    """PPO: the critic's value may move this far from its old value before its loss is clipped"""
    gae_lambda: float = 0.95
    """PPO: λ of generalised advantage estimation (γ = 1)"""
    critic_learning_rate: float = 0.0
    """PPO: AdamW learning rate of the critic; 0 = learning_rate"""
    max_grad_norm: float = 1.0
    """clip the gradient to this global L2 norm; 0 turns clipping off"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    trainable_blocks: int = 0
    """train only the last N transformer blocks and the final norm (the rest is frozen, stored in the compute dtype); 0 trains every parameter"""
    steps: int = 100
    """number of updates"""
    seed: int = 0
    """seed of prompt order and sampling (each step's randomness is derived from it and the step number)"""
    device: str = "auto"
    """"auto" (CUDA if present, else Apple mps, else CPU), "cpu", "cuda", "cuda:1", "mps", ..."""
    dtype: str = "auto"
    """compute precision of the forward passes: "auto" (what the device does fast: reinforce_edu.precision), "bf16" or "fp16" (autocast; fp32 master weights; fp16 scales the loss) or "fp32\""""
    attention: str = "auto"
    """attention kernel: "auto" (on a CPU "eager" plain matmuls for the scoring passes, whose backward they run faster than the fused kernel at these lengths, and "sdpa" for sampling; "sdpa" on CUDA), "eager" or "sdpa" (everywhere)\""""
    keep_freed_memory: bool = True
    """CPU: glibc keeps freed memory for the next step instead of returning it to the OS (no page faults on each step's fresh tensors; process-wide; reinforce_edu.allocator)"""
    checkpoint_every: int = 0
    """write a checkpoint every N steps (0: only at the end)"""
    output_dir: str = "runs/rlhf"
    """where metrics.jsonl, config.json and checkpoint.pt go"""
    resume: bool = False
    """continue from output_dir/checkpoint.pt if it exists"""
    progress: bool = True
    """show a tqdm progress bar"""

    def __post_init__(self) -> None:
        for f in fields(self):  # types first: a clear TypeError instead of a crash later
            v = getattr(self, f.name)
            want = type(f.default)
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                setattr(self, f.name, float(v))
            elif not isinstance(v, want) or (want is not bool and isinstance(v, bool)):
                raise TypeError(f"config field {f.name} must be a {want.__name__}, got {v!r}")
        for name in ("prompts_per_step", "samples_per_prompt", "max_new_tokens", "steps"):
            check_positive_int(getattr(self, name), name)
        for name in ("trainable_blocks", "checkpoint_every"):
            check_positive_int(getattr(self, name), name, minimum=0)
        for name in ("learning_rate", "temperature"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)}")
        for name in ("beta", "max_grad_norm", "weight_decay", "clip_range", "value_clip_range", "critic_learning_rate"):
            check_nonnegative(getattr(self, name), name)
        check_positive_int(self.ppo_epochs, "ppo_epochs")
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f"gae_lambda must be in [0, 1], got {self.gae_lambda}")
        check_choice(self.method, "method", METHODS)
        check_choice(self.advantage_scale, "advantage_scale", ADVANTAGE_SCALES)
        if self.advantage_scale == "group_std" and self.samples_per_prompt < 2:
            raise ValueError(f"advantage_scale='group_std' (GRPO) divides by the spread of each prompt's samples: "
                             f"it needs samples_per_prompt >= 2, got {self.samples_per_prompt}")
        if self.method == "ppo" and (self.kl_placement != "reward" or self.advantage_scale != "none"):
            raise ValueError("method='ppo' pays the KL in the per-token reward and whitens its own advantages: "
                             "use kl_placement='reward' and advantage_scale='none'")
        check_choice("leave_one_out" if self.baseline == "rloo" else self.baseline, "baseline", BASELINES)
        if self.method == "reinforce" and self.baseline in ("rloo", "leave_one_out") and self.samples_per_prompt < 2:
            raise ValueError(f"baseline={self.baseline!r} (leave-one-out) needs samples_per_prompt >= 2: each "
                             f"sample's baseline is the mean of the *other* samples of its prompt; got "
                             f"samples_per_prompt={self.samples_per_prompt}")
        check_choice(self.kl_estimator, "kl_estimator", KL_ESTIMATORS)
        check_choice(self.kl_placement, "kl_placement", KL_PLACEMENTS)
        check_choice(self.aggregation, "aggregation", AGGREGATIONS)
        check_choice(self.dtype, "dtype", DTYPES)
        check_choice(self.attention, "attention", ("auto", "eager", "sdpa"))
        if not (self.device in ("auto", "cpu", "mps") or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda[:i]' or 'mps', got {self.device!r}")


# ----------------------------------------------------------------------------- building blocks

def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(device: str) -> torch.device:
    """"auto" -> CUDA if available, else Apple mps if available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available; use device='cpu' or 'auto'")
    if device == "mps" and not _mps_available():
        raise ValueError("device='mps' but no Apple GPU is available; use device='cpu' or 'auto'")
    return torch.device(device)


@contextlib.contextmanager
def attention_kernel(model: torch.nn.Module, name: str):
    """Run `model` with the attention implementation `name` ("eager", "sdpa") inside the block; restored after.

    A no-op for a model that is already set so, or that cannot switch (no `set_attn_implementation`).
    """
    previous = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if previous is None or previous == name or not hasattr(model, "set_attn_implementation"):
        yield model
        return
    model.set_attn_implementation(name)
    try:
        yield model
    finally:
        model.set_attn_implementation(previous)


def transformer_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The list of transformer blocks of a transformers causal LM (`model.base_model.layers`)."""
    blocks = getattr(model.base_model, "layers", None)
    if not isinstance(blocks, torch.nn.ModuleList):
        raise ValueError(f"trainable_blocks needs a model whose base model has a `layers` ModuleList "
                         f"(Llama-like); {type(model).__name__} has none. Use trainable_blocks=0")
    return blocks


def trainable_parameter_names(model: torch.nn.Module, trainable_blocks: int = 0) -> list[str]:
    """Names of the parameters that train: all (0), or those of the last N blocks + the final norm.

    With N > 0 the output layer does not train: in a model with tied embeddings (SmolLM2) it
    *is* the input embedding, and training it would send the backward pass through every block.
    """
    if trainable_blocks == 0:
        return [n for n, _ in model.named_parameters()]
    blocks = transformer_blocks(model)
    if trainable_blocks > len(blocks):
        raise ValueError(f"trainable_blocks={trainable_blocks} but the model has {len(blocks)} blocks")
    keep = {id(p) for b in blocks[-trainable_blocks:] for p in b.parameters()}
    norm = getattr(model.base_model, "norm", None)
    if isinstance(norm, torch.nn.Module):
        keep |= {id(p) for p in norm.parameters()}
    return [n for n, p in model.named_parameters() if id(p) in keep]


def prepare_policy(model: torch.nn.Module, names: list[str], dtype: torch.dtype) -> torch.nn.Module:
    """Freeze every parameter not in `names`; store the frozen ones in `dtype`, the trainable ones in fp32.

    Under bf16/fp16 autocast the frozen weights would be cast to it at every matmul anyway;
    casting them once saves the time and half their memory (in fp32 nothing changes). The trainable ones are the fp32
    "master weights" AdamW updates (a bf16 weight would round away updates smaller than 2^-8 of it).
    """
    train = set(names)
    for n, p in model.named_parameters():
        p.requires_grad_(n in train)
        p.data = p.data.float() if n in train else p.data.to(dtype)
    return model.eval()  # eval: no dropout, so the scoring pass matches the sampling pass


def store_frozen_linears(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Store the weights of a frozen model's transformer-block linear layers in `dtype` (in place).

    Under autocast every matmul casts its fp32 weight to the compute dtype at every pass; a frozen
    model (π_ref) can hold the cast copy instead: the same values, once, in half the memory. The
    embedding (tied to the output layer in SmolLM2) and the norms keep their dtype.
    """
    if dtype == torch.float32:
        return model
    for block in transformer_blocks(model):
        for module in block.modules():
            if isinstance(module, torch.nn.Linear) and not module.weight.requires_grad:
                module.weight.data = module.weight.data.to(dtype)
                if module.bias is not None:
                    module.bias.data = module.bias.data.to(dtype)
    return model


def _adamw(params: list, lr: float, weight_decay: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW, fused into one kernel per step where torch has one (CPU and CUDA)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=device.type in ("cpu", "cuda") or None)


def load_prompt_list(source: str) -> list[str]:
    """A data split name ("train" | "heldout") or a .jsonl / .txt file -> list of prompts."""
    from .data import SPLITS, load_prompts
    if source in SPLITS:
        prompts = load_prompts(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"prompts {source!r} is neither a data split {SPLITS} nor a file")
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            prompts = [json.loads(line)["prompt"] for line in text.splitlines() if line.strip()]
        else:
            prompts = [line for line in text.splitlines() if line.strip()]
    return check_prompts(prompts, f"prompts from {source!r}")


def make_reward_fn(name: str, backbone: torch.nn.Module, tokenizer) -> RewardFn:
    """The proxy reward named in the config. "reward_model" shares `backbone` (the frozen reference)."""
    if name == "gold":
        return gold_reward
    if name == "reward_model":
        from .reward_model import load_reward_model
        return load_reward_model(backbone=backbone, tokenizer=tokenizer).as_reward_fn()
    if ":" in name:
        module, attr = name.split(":", 1)
        fn = getattr(importlib.import_module(module), attr, None)
        if not callable(fn):
            raise ValueError(f"reward {name!r}: {module} has no callable {attr!r}")
        return fn
    raise ValueError(f"unknown reward {name!r}; expected 'reward_model', 'gold' or 'module:function'")


def step_seed(seed: int, step: int, stream: int) -> int:
    """A distinct, reproducible seed for each (run seed, step, purpose): no RNG state to carry."""
    return (seed * 1_000_003 + step * 7919 + stream) % (2 ** 63)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_log(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl (a run folder or the file itself), one dict per step."""
    path = Path(path)
    path = path / LOG if path.is_dir() else path
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_log(path_or_records, keys: tuple[str, ...] = ("proxy_reward", "gold_reward", "kl", "entropy",
                                                       "length", "grad_norm"), axes=None, label: str | None = None):
    """One small plot per metric against the step, from a metrics.jsonl or its records. Returns the axes."""
    import matplotlib.pyplot as plt
    records = read_log(path_or_records) if isinstance(path_or_records, (str, Path)) else path_or_records
    if axes is None:
        _, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.6))
    for ax, key in zip(list(getattr(axes, "flat", axes)), keys):
        steps = [r["step"] for r in records if r.get(key) is not None]
        ax.plot(steps, [r[key] for r in records if r.get(key) is not None], label=label)
        ax.set_title(key)
        ax.set_xlabel("step")
    return axes


# ----------------------------------------------------------------------------- the trainer

class Trainer:
    """REINFORCE / RLOO fine-tuning loop. `Trainer(config).train()`; see the module docstring.

    Optional objects replace what the config names (for notebooks and tests): `policy` and
    `tokenizer` (a loaded model; it is modified in place), `reward_fn` (proxy, TRL signature),
    `gold_fn` (log only; default rewards.gold_reward), `prompts` (list of str).
    """

    def __init__(self, config: TrainConfig, *, policy=None, tokenizer=None, reward_fn: RewardFn | None = None,
                 gold_fn: RewardFn | None = None, prompts: list[str] | None = None) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        if (policy is None) != (tokenizer is None):
            raise ValueError("pass both policy and tokenizer, or neither")
        self.config = cfg = config
        self.prompts = check_prompts(prompts) if prompts is not None else load_prompt_list(cfg.prompts)
        self.device = resolve_device(cfg.device)
        self.precision: Precision = choose_precision(self.device, cfg.dtype)  # printed once per process
        self.dtype = self.precision.dtype
        self.autocast = self.precision.autocast
        # fp16: the loss is scaled before backward and the gradients unscaled before clipping (_apply)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision.loss_scaling else None
        if self.device.type == "cpu" and cfg.keep_freed_memory:
            keep_freed_memory()
        if policy is None:
            from .models import load_model
            policy, tokenizer = load_model(cfg.model)
        self.tokenizer = tokenizer
        ctx = context_length(policy)  # every prompt must fit before training starts, not at step 500
        encode_prompts(tokenizer, self.prompts, max_length=None if ctx is None else ctx - cfg.max_new_tokens)
        self.trainable = trainable_parameter_names(policy, cfg.trainable_blocks)
        self.policy = prepare_policy(policy.to(self.device), self.trainable, self.dtype)
        auto = cfg.attention == "auto"
        self.sample_attention = "sdpa" if auto else cfg.attention  # the kernel of `rollout` and `evaluate`
        score = ("sdpa" if self.device.type == "cuda" else "eager") if auto else cfg.attention
        if hasattr(self.policy, "set_attn_implementation"):  # before the copies below, which inherit it
            self.policy.set_attn_implementation(score)
        self.ref = frozen_copy(self.policy)  # π_ref: the policy as it starts, frozen
        if hasattr(self.ref.base_model, "layers"):
            store_frozen_linears(self.ref, self.dtype)
        self.reward_fn = reward_fn if reward_fn is not None else make_reward_fn(cfg.reward, self.ref, tokenizer)
        self.gold_fn = gold_fn if gold_fn is not None else gold_reward
        self.params = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = _adamw(self.params, cfg.learning_rate, cfg.weight_decay, self.device)
        self.critic = self.critic_optimizer = None
        self.critic_params: list = []
        if cfg.method == "ppo":  # a second copy of the transformer + a value head, trained alongside
            self.critic = ValueModel(self.policy, self.trainable)
            self.critic_params = [p for p in self.critic.parameters() if p.requires_grad]
            self.critic_optimizer = _adamw(self.critic_params, cfg.critic_learning_rate or cfg.learning_rate,
                                           cfg.weight_decay, self.device)
        self.baseline = make_baseline(cfg.baseline, decay=cfg.baseline_decay, n_prompts=len(self.prompts))
        self.step = 0
        self.n_skipped = 0
        self.history: list[dict] = []
        self._append = False  # a fresh run starts a new log; a resumed one appends to the trimmed log
        self.out = Path(cfg.output_dir)
        if cfg.resume and (self.out / CHECKPOINT).is_file():
            self.load_checkpoint(self.out / CHECKPOINT)

    # -- data ------------------------------------------------------------------------------
    def prompt_ids(self, step: int) -> Tensor:
        """(P,) prompt indices of a step: consecutive slices of one shuffled order per epoch."""
        P, N = self.config.prompts_per_step, len(self.prompts)
        orders: dict[int, Tensor] = {}
        ids = []
        for j in range(step * P, step * P + P):  # position j in the endless stream of epochs
            epoch, pos = divmod(j, N)
            if epoch not in orders:
                gen = torch.Generator().manual_seed(step_seed(self.config.seed, epoch, 1))
                orders[epoch] = torch.randperm(N, generator=gen)
            ids.append(int(orders[epoch][pos]))
        return torch.tensor(ids)  # (P,)

    # -- one update ------------------------------------------------------------------------
    def rollout(self, prompts: list[str], k: int, seed: int) -> Rollout:
        """Sample k completions of each prompt from the current policy (no grad)."""
        with self.autocast(), attention_kernel(self.policy, self.sample_attention):
            return sample(self.policy, self.tokenizer, prompts, k, self.config.max_new_tokens,
                          temperature=self.config.temperature, seed=seed)

    def score(self, rollout: Rollout) -> tuple[Tensor, Tensor]:
        """(proxy, gold) rewards, each (B,), checked: NaN or a wrong count raises, naming the function."""
        with torch.no_grad(), self.autocast():
            proxy = compute_rewards(self.reward_fn, rollout.completions, rollout.repeated_prompts)
        gold = compute_rewards(self.gold_fn, rollout.completions, rollout.repeated_prompts)
        return proxy.to(self.device), gold.to(self.device)

    def train_step(self) -> dict:
        """One update (REINFORCE; or `ppo_epochs` PPO updates), or a logged skip. Returns the step's metrics."""
        with PeakMemory(self.device, release=False) as mem:
            rec = self._train_step()
        rec["peak_memory_mib"] = mem.peak / 2 ** 20
        return rec

    def _train_step(self) -> dict:
        cfg, start = self.config, time.perf_counter()
        P, k = cfg.prompts_per_step, cfg.samples_per_prompt
        ids = self.prompt_ids(self.step)
        r = self.rollout([self.prompts[i] for i in ids], k, seed=step_seed(cfg.seed, self.step, 2))
        gen_time = time.perf_counter() - start
        proxy, gold = self.score(r)  # raises before anything changes or is written
        mask = r.completion_mask  # (B, T)
        with torch.no_grad(), self.autocast():  # the one no-grad pass: π_ref
            ref_logp = completion_logprobs(self.ref, r.input_ids, r.attention_mask, r.prompt_length,
                                           temperature=cfg.temperature, group_size=k)  # (B, T)
        with self.autocast():  # the training pass; it also gives log π_θ for the KL
            logp, entropy = completion_logprobs(self.policy, r.input_ids, r.attention_mask, r.prompt_length,
                                                temperature=cfg.temperature, return_entropy=True,
                                                group_size=k)  # (B, T)
        valid = mask > 0
        rec = {"step": self.step + 1, "proxy_reward": proxy.mean().item(), "gold_reward": gold.mean().item(),
               "entropy": entropy[valid].mean().item(), "length": r.lengths.float().mean().item()}
        reason, grad_norm = None, float("nan")
        if not (torch.isfinite(logp[valid]).all() and torch.isfinite(ref_logp[valid]).all()):
            reason = "non-finite log-probs"
        elif cfg.method == "ppo":
            grad_norm, reason = self._ppo_update(r, logp, ref_logp, proxy, rec)
        else:
            try:
                out = reinforce_loss(logp, proxy, mask, ref_logp=ref_logp, beta=cfg.beta,
                                     kl_estimator=cfg.kl_estimator, kl_placement=cfg.kl_placement,
                                     baseline=self.baseline, group_size=k, prompts=ids, aggregation=cfg.aggregation,
                                     advantage_scale=cfg.advantage_scale)
            except NonFiniteLossError:  # reinforce_loss refuses a non-finite loss
                reason = "non-finite loss"
            if reason is None:
                grad_norm, reason = self._apply(out.loss)
                if reason is None:
                    self.baseline.update(out.returns.view(P, k), ids)
                rec.update(loss=out.loss.item(), kl=out.kl.mean().item(), returns=out.returns.mean().item(),
                           advantage_std=out.advantages[valid].std().item() if valid.sum() > 1 else 0.0)
        if reason is not None:
            self.n_skipped += 1
        self.step += 1
        rec.update(grad_norm=grad_norm, clipped=bool(cfg.max_grad_norm > 0 and grad_norm > cfg.max_grad_norm),
                   skipped=reason, n_skipped=self.n_skipped, step_time=time.perf_counter() - start, gen_time=gen_time)
        return {k_: (None if isinstance(v, float) and not math.isfinite(v) else v) for k_, v in rec.items()}

    def _apply(self, loss: Tensor) -> tuple[float, str | None]:
        """Backpropagate `loss`, clip, step the optimiser(s) (policy, and the critic with PPO).

        Returns (‖g‖ of the policy before clipping, None), or (‖g‖, "non-finite gradient") with
        nothing updated: a non-finite gradient never reaches the weights.
        """
        cfg = self.config
        groups = [(self.params, self.optimizer)]
        if self.critic is not None:
            groups.append((self.critic_params, self.critic_optimizer))
        for _, opt in groups:
            opt.zero_grad(set_to_none=True)
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()  # fp16: ∇(S·L) = S·g
        norms = []
        for params, opt in groups:
            if self.scaler is not None:
                self.scaler.unscale_(opt)  # g ← g / S, before the norm and the clipping see it
            grads = [p.grad for p in params if p.grad is not None]
            norms.append(torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(()))  # ‖g‖ before clipping
        reason = None if all(math.isfinite(float(n)) for n in norms) else "non-finite gradient"
        if reason is None:
            for (params, opt), norm in zip(groups, norms):
                if cfg.max_grad_norm > 0:  # g ← g · min(1, c / ‖g‖)
                    torch.nn.utils.clip_grads_with_norm_(params, cfg.max_grad_norm, norm)
                opt.step()
        if self.scaler is not None:  # fp16: S halves after an overflow, grows after a run of good steps
            self.scaler.update()
        for _, opt in groups:
            opt.zero_grad(set_to_none=True)
        return float(norms[0]), reason

    def _ppo_update(self, r: Rollout, logp: Tensor, ref_logp: Tensor, proxy: Tensor,
                    rec: dict) -> tuple[float, str | None]:
        """`ppo_epochs` PPO updates on this batch (reinforce_edu.ppo.ppo_update); fills `rec`.

        The training pass already made (`logp`) is the first pass's π_θ and π_old.
        """
        cfg, k = self.config, self.config.samples_per_prompt
        first = [logp]
        failed: list[str] = []

        def policy_logp() -> Tensor:
            if first:
                return first.pop()
            with self.autocast():
                return completion_logprobs(self.policy, r.input_ids, r.attention_mask, r.prompt_length,
                                           temperature=cfg.temperature, group_size=k)

        def critic_values() -> Tensor:
            with self.autocast():
                return self.critic(r.input_ids, r.attention_mask, r.prompt_length)  # (B, T)

        def apply(loss: Tensor) -> float | None:
            if not torch.isfinite(loss):
                failed.append("non-finite loss")
                return None
            norm, reason = self._apply(loss)
            if reason is not None:
                failed.append(reason)
                return None
            return norm

        stats = ppo_update(policy_logp, critic_values, proxy, r.completion_mask, apply, ref_logp=ref_logp,
                           beta=cfg.beta, kl_estimator=cfg.kl_estimator, epochs=cfg.ppo_epochs,
                           clip_range=cfg.clip_range, value_clip_range=cfg.value_clip_range, gamma=1.0,
                           lam=cfg.gae_lambda, aggregation=cfg.aggregation)
        rec.update(loss=stats["pg_loss"] + stats["value_loss"], kl=stats["kl"].mean().item(),
                   returns=stats["returns"].mean().item(), advantage_std=stats["advantage_std"],
                   value_loss=stats["value_loss"], clip_fraction=stats["clip_fraction"],
                   approx_kl=stats["approx_kl"], ppo_epochs_done=stats["epochs_done"])
        if stats["epochs_done"] == 0:  # the very first update was refused: a skipped step
            return float("nan"), failed[0] if failed else "non-finite gradient"
        return stats["grad_norms"][0], None

    # -- the loop --------------------------------------------------------------------------
    def train(self) -> list[dict]:
        """Run until `config.steps` updates are done; log every step, checkpoint as configured."""
        from tqdm.auto import tqdm
        cfg = self.config
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not cfg.progress, desc="train")
        while self.step < cfg.steps:
            rec = self.train_step()
            self._log(rec)
            bar.update(1)
            bar.set_postfix(proxy=f"{rec['proxy_reward']:.3f}", gold=f"{rec['gold_reward']:.3f}",
                            kl=f"{rec['kl']:.3f}" if rec.get("kl") is not None else "-")
            if self.step == cfg.steps or (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0):
                self.save_checkpoint()
        bar.close()
        return self.history

    def _log(self, rec: dict) -> None:
        """Append one record to metrics.jsonl (the run folder is created at the first record)."""
        if not self._append:
            self.out.mkdir(parents=True, exist_ok=True)
            record = {**asdict(self.config), PRECISION_KEY: self.precision.as_dict()}  # the setting and what it chose
            _atomic_write_text(self.out / CONFIG, json.dumps(record, indent=2))
        with open(self.out / LOG, "a" if self._append else "w", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        self._append = True
        self.history.append(rec)

    # -- checkpoints -----------------------------------------------------------------------
    def state(self) -> dict:
        """Everything a resumed run needs to continue exactly."""
        named = dict(self.policy.named_parameters())
        return {
            "step": self.step, "n_skipped": self.n_skipped, "config": asdict(self.config),
            "trainable": {n: named[n].detach().cpu().clone() for n in self.trainable},
            "optimizer": self.optimizer.state_dict(), "baseline": self.baseline.state_dict(),
            "critic": None if self.critic is None else {n: p.detach().cpu().clone()
                                                        for n, p in self.critic.named_parameters() if p.requires_grad},
            "critic_optimizer": None if self.critic is None else self.critic_optimizer.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "rng": {"python": random.getstate(), "torch": torch.random.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        }

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """torch.save to a temporary file in the same folder, then os.replace: never half-written.

        Holds the trainable parameters only (the frozen ones are those of `config.model`).
        """
        path = Path(path) if path is not None else self.out / CHECKPOINT
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore weights, optimiser, baseline, RNG states and step; trim the log to that step."""
        state = torch.load(path, map_location="cpu", weights_only=False)
        saved = state["config"]
        ignore = {"steps", "checkpoint_every", "resume", "progress", "output_dir", "device", "keep_freed_memory"}
        diff = sorted(k for k in saved if k not in ignore and saved[k] != getattr(self.config, k, None))
        if diff:
            raise ValueError(f"cannot resume {path}: config differs from the checkpoint's in {diff}")
        named = dict(self.policy.named_parameters())
        if set(state["trainable"]) != set(self.trainable):
            raise ValueError(f"cannot resume {path}: it holds other trainable parameters than this config")
        with torch.no_grad():
            for n, t in state["trainable"].items():
                named[n].copy_(t)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.critic is not None and state.get("critic") is not None:
            critic = dict(self.critic.named_parameters())
            with torch.no_grad():
                for n, t in state["critic"].items():
                    critic[n].copy_(t)
            self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.baseline.load_state_dict(state["baseline"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        random.setstate(state["rng"]["python"])
        torch.random.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step, self.n_skipped = int(state["step"]), int(state["n_skipped"])
        log = self.out / LOG
        if log.is_file():  # drop records written after the checkpoint (or a torn last line)
            kept = []
            for line in log.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if rec.get("step", 0) <= self.step:
                    kept.append(rec)
            _atomic_write_text(log, "".join(json.dumps(r) + "\n" for r in kept))
            self.history = kept
            self._append = True

    # -- evaluation ------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, prompts: list[str], k: int = 1, seed: int = 0, *, max_new_tokens: int | None = None,
                 proxy: bool = True, model: str = "policy") -> dict:
        """Mean gold (and proxy) reward of k samples per prompt, with standard errors, and the samples.

        model: "policy" (as trained so far) or "reference" (the policy before training).
        SE = std / √n over the n = P·k completions. Deterministic for a given seed.
        """
        prompts = check_prompts(prompts)
        check_choice(model, "model", ("policy", "reference"))
        cfg = self.config
        sampler = self.policy if model == "policy" else self.ref
        with self.autocast(), attention_kernel(sampler, self.sample_attention):
            r = sample(sampler, self.tokenizer, prompts, k,
                       max_new_tokens or cfg.max_new_tokens, temperature=cfg.temperature, seed=seed)
        proxy_r, gold = self.score(r) if proxy else (None, compute_rewards(self.gold_fn, r.completions,
                                                                             r.repeated_prompts))
        n = gold.numel()
        out = {"gold": gold.mean().item(), "gold_se": (gold.std() / math.sqrt(n)).item() if n > 1 else float("nan"),
               "length": r.lengths.float().mean().item(), "completions": r.completions, "gold_values": gold.tolist()}
        if proxy_r is not None:
            out.update(proxy=proxy_r.mean().item(), proxy_values=proxy_r.tolist(),
                       proxy_se=(proxy_r.std() / math.sqrt(n)).item() if n > 1 else float("nan"))
        return out


def run(config: TrainConfig, **objects) -> Trainer:
    """Build a `Trainer` from `config` (objects: see `Trainer`), train it, return it."""
    trainer = Trainer(config, **objects)
    trainer.train()
    return trainer


def config_from_dict(values: dict) -> TrainConfig:
    """A TrainConfig from a dict (e.g. a JSON config file); unknown keys are an error."""
    known = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in values.items() if k != PRECISION_KEY}  # a run's config.json: the record, not a setting
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; known: {sorted(known)}")
    return dataclasses.replace(TrainConfig(), **values)
