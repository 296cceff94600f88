"""The settings of a fine-tuning run: one dataclass, a docstring under every field, checked on creation.

`python -m reinforce_edu.train --help` lists them; a run writes them to its config.json together with
the precision `dtype="auto"` chose. Taught in notebooks/06_rlhf_small_llm.ipynb.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

from reinforce_edu.core._checks import check_choice, check_nonnegative, check_positive_int
from reinforce_edu.core.baselines import BASELINES
from reinforce_edu.core.credit import AGGREGATIONS
from reinforce_edu.core.groups import GROUP_FILTERS
from reinforce_edu.core.kl import KL_ESTIMATORS
from reinforce_edu.core.losses import ADVANTAGE_SCALES, KL_PLACEMENTS
from reinforce_edu.perf.precision import DTYPES

CHECKPOINT = "checkpoint.json"
"""The checkpoint marker in output_dir: it names the folder of the last complete checkpoint (llm.checkpoint)."""
LOG = "metrics.jsonl"
CONFIG = "config.json"
PRECISION_KEY = "precision"
"""config.json holds the config's fields and, under this key, the precision "auto" chose and why."""
TIME_KEYS = ("step_time", "gen_time", "peak_memory_mib")
"""Wall-clock and memory fields of a log record: the only ones that differ between identical runs."""
METHODS = ("reinforce", "ppo")
"""`TrainConfig.method`: the REINFORCE loss (any baseline, GRPO's scaling), or PPO (reinforce_edu.llm.ppo)."""


@dataclass
class TrainConfig:
    """Settings of one fine-tuning run (`python -m reinforce_edu.train --help` lists them)."""

    model: str = "smollm2"
    """model to fine-tune: "smollm2" (SmolLM2-135M-Instruct, offline) or any causal LM's transformers folder / hub id"""
    reward: str = "reward_model"
    """proxy reward optimised: "reward_model" (lesson 05's, for smollm2), a reward head file "*.safetensors" (scripts/train_reward_model.py --model M --out F), "gold" (the gold scorer itself) or "module:function" (TRL signature)"""
    prompts: str = "train"
    """training prompts: a data split ("train" | "heldout") or a .jsonl ({"prompt": ...} per line) / .txt (one per line) file"""
    learning_rate: float = 1e-5
    """AdamW learning rate"""
    prompts_per_step: int = 8
    """P: prompts per step"""
    samples_per_prompt: int = 4
    """k: completions sampled per prompt (B = P·k rows per step); RLOO needs k >= 2"""
    prompt_stride: int = 0
    """positions the shuffled prompt stream advances per step (0: P). With stride S >= P, step t uses the first P
    of stream positions [t·S, t·S + S): methods with different P then see nested prompt sets at every step"""
    max_new_tokens: int = 32
    """longest completion, in tokens (generation stops earlier at EOS)"""
    temperature: float = 1.0
    """sampling temperature; log-probs use the same one, so the estimator stays exact"""
    baseline: str = "rloo"
    """baseline b: "none", "running_mean", "rloo" (leave-one-out), or any name of reinforce_edu.core.baselines.BASELINES"""
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
    group_filter: str = "none"
    """"drop_zero_variance": DAPO's filter, groups whose k rewards are all equal (no advantage under RLOO/GRPO) leave the loss; "none" keeps every group (lesson 08)"""
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
    lora_rank: int = 0
    """LoRA: rank r of the adapters W' = W + (α/r)·B·A that train instead of the weights (reinforce_edu.llm.lora; π_ref is then the policy with its adapters off, no copy); 0 = no LoRA"""
    lora_alpha: float = 16.0
    """LoRA: α of the scale α/r"""
    lora_dropout: float = 0.0
    """LoRA: dropout on the adapters' input in the training passes only (never in sampling or π_ref), in [0, 1)"""
    lora_target_modules: str = "all-linear"
    """LoRA: layers that get adapters: "all-linear" (every linear layer of the blocks) or comma-separated names, e.g. "q_proj,v_proj\""""
    steps: int = 100
    """number of updates"""
    seed: int = 0
    """seed of prompt order and sampling (each step's randomness is derived from it and the step number)"""
    device: str = "auto"
    """"auto" (CUDA if present, else Apple mps, else CPU), "cpu", "cuda", "cuda:1", "mps", ..."""
    dtype: str = "auto"
    """compute precision of the forward passes: "auto" (what the device does fast: reinforce_edu.perf.precision), "bf16" or "fp16" (autocast; fp32 master weights; fp16 scales the loss) or "fp32\""""
    attention: str = "auto"
    """attention kernel: "auto" (on a CPU "eager" plain matmuls for the scoring passes, whose backward they run faster than the fused kernel at these lengths, and "sdpa" for sampling; "sdpa" on CUDA), "eager" or "sdpa" (everywhere)\""""
    shard: str = "none"
    """several processes: "none" (each holds the whole model), "full" (weights, gradients and AdamW's moments split across them: ZeRO-3's partitioning, FSDP FULL_SHARD) or "grad_op" (gradients and moments split: ZeRO-2's, FSDP SHARD_GRAD_OP); reinforce_edu.llm.sharding. `accelerate launch` with an FSDP config sets it"""
    keep_freed_memory: bool = True
    """CPU: glibc keeps freed memory for the next step instead of returning it to the OS (no page faults on each step's fresh tensors; process-wide; reinforce_edu.perf.allocator)"""
    checkpoint_every: int = 0
    """write a checkpoint every N steps (0: only at the end)"""
    output_dir: str = "runs/rlhf"
    """where metrics.jsonl, config.json and the checkpoint (checkpoint.json and its folder) go"""
    resume: bool = False
    """continue from output_dir's checkpoint if it has one"""
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
        for name in ("trainable_blocks", "checkpoint_every", "lora_rank", "prompt_stride"):
            check_positive_int(getattr(self, name), name, minimum=0)
        for name in ("learning_rate", "temperature"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)}")
        for name in ("beta", "max_grad_norm", "weight_decay", "clip_range", "value_clip_range", "critic_learning_rate"):
            check_nonnegative(getattr(self, name), name)
        check_positive_int(self.ppo_epochs, "ppo_epochs")
        self._check_lora()
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f"gae_lambda must be in [0, 1], got {self.gae_lambda}")
        check_choice(self.method, "method", METHODS)
        check_choice(self.advantage_scale, "advantage_scale", ADVANTAGE_SCALES)
        if 0 < self.prompt_stride < self.prompts_per_step:
            raise ValueError(f"prompt_stride={self.prompt_stride} must be 0 or >= prompts_per_step={self.prompts_per_step} "
                             "(a smaller stride would repeat prompts in consecutive steps)")
        check_choice(self.group_filter, "group_filter", GROUP_FILTERS)
        if self.advantage_scale == "group_std" and self.samples_per_prompt < 2:
            raise ValueError(f"advantage_scale='group_std' (GRPO) divides by the spread of each prompt's samples: "
                             f"it needs samples_per_prompt >= 2, got {self.samples_per_prompt}")
        if self.method == "ppo" and (self.kl_placement != "reward" or self.advantage_scale != "none"
                                     or self.group_filter != "none"):
            raise ValueError("method='ppo' pays the KL in the per-token reward and whitens its own advantages: "
                             "use kl_placement='reward', advantage_scale='none' and group_filter='none'")
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
        check_choice(self.shard, "shard", ("none", "full", "grad_op"))
        if not (self.device in ("auto", "cpu", "mps") or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda[:i]' or 'mps', got {self.device!r}")

    def _check_lora(self) -> None:
        if not (math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
            raise ValueError(f"lora_alpha must be a finite number > 0, got {self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not [s for s in self.lora_target_modules.split(",") if s.strip()]:
            raise ValueError(f"lora_target_modules must be 'all-linear' or comma-separated module names, "
                             f"got {self.lora_target_modules!r}")
        if self.lora_rank > 0 and self.trainable_blocks > 0:
            raise ValueError(f"lora_rank={self.lora_rank} and trainable_blocks={self.trainable_blocks}: with LoRA "
                             f"only the adapters train; set trainable_blocks=0 (or lora_rank=0)")


def config_from_dict(values: dict) -> TrainConfig:
    """A TrainConfig from a dict (e.g. a JSON config file); unknown keys are an error."""
    known = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in values.items() if k != PRECISION_KEY}  # a run's config.json: the record, not a setting
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; known: {sorted(known)}")
    return dataclasses.replace(TrainConfig(), **values)
