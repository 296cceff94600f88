r"""LoRA: train a small low-rank update beside each frozen weight matrix, not the matrix (PEFT).

For a target linear layer y = W x (W: (out, in), frozen) LoRA adds two small matrices of rank r:

    W' = W + (α/r)·B·A          A: (r, in), random (Kaiming-uniform),   B: (out, r) = 0 at the start

so at step 0 W' = W: the LoRA policy *is* the base model, exactly. Only A and B train, r·(in + out)
numbers per layer instead of in·out. By the chain rule, with G = ∂L/∂W' the full model's gradient,

    ∂L/∂B = (α/r)·G·Aᵀ,          ∂L/∂A = (α/r)·Bᵀ·G

(tests/test_lora.py checks both against a full backward of the merged model; at step 0, B = 0 makes
∂L/∂A = 0, so A first moves at step 2).

π_ref needs no second copy of the weights: it is the same model with its adapters switched off
(PEFT's `disable_adapter()`): `WithoutAdapters`, whose passes (the π_ref scoring pass, sampling in
`evaluate(model="reference")`, the reward model's features, which hook one of its blocks) run the
policy's own modules with the adapters off.

With LoRA, in the trainer:
- `trainable_blocks` is refused (config): the adapters are what trains; the rest is frozen and stored in
  the compute dtype, as the frozen blocks of `trainable_blocks` are (llm.freeze.prepare_policy).
- PPO's critic (llm.ppo.ValueModel) is, as without LoRA, a copy of the transformer with a scalar head; the
  copy carries its own fresh adapters, and only they and the head train. Its frozen base weights are a
  second copy: sharing one base between two adapter sets would need switching adapters between the
  policy's and the critic's passes, which this course does not do (benchmarks/memory_modes.py measures it).
- `lora_dropout` acts only in the passes that build a gradient (the training passes); sampling, π_ref
  and the reward model see no dropout, so the samples still come from π_θ itself. With dropout > 0 the
  log π in the loss is that of a thinned adapter (and PPO's ratio also moves with the dropout mask).

Saved adapters: `save_adapter` (load with `peft.PeftModel.from_pretrained(base_model, path)`);
`save_merged` writes W' as a plain transformers model. Taught in notebooks/07_comparison.ipynb.
"""

from __future__ import annotations

import copy
import functools
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from reinforce_edu.llm.freeze import prepare_policy

ALL_LINEAR = "all-linear"
"""`lora_target_modules` for every linear layer of the blocks (PEFT's keyword; the output layer excluded)."""


class TrainingPassDropout(nn.Dropout):
    """Dropout that acts where a gradient is being built (torch.is_grad_enabled()), not in no-grad passes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, training=torch.is_grad_enabled())


def target_modules(spec: str) -> str | list[str]:
    """`lora_target_modules` as PEFT takes it: "all-linear", or the comma-separated names as a list."""
    if spec.strip() == ALL_LINEAR:
        return ALL_LINEAR
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise ValueError(f"lora_target_modules must be {ALL_LINEAR!r} or comma-separated module names "
                         f"(e.g. 'q_proj,v_proj'), got {spec!r}")
    return names


def add_adapters(model: nn.Module, rank: int, alpha: float, dropout: float = 0.0, targets: str = ALL_LINEAR,
                 seed: int = 0):
    """Wrap a transformers causal LM in PEFT LoRA adapters (B = 0, A drawn from `seed`); returns the `PeftModel`.

    The model's own target modules are replaced in place, so `peft_model.get_base_model()` is `model`,
    now with adapters; every parameter but A and B is frozen. The global RNG is left untouched.
    """
    from peft import LoraConfig, get_peft_model
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules(targets),
                        bias="none", task_type="CAUSAL_LM")
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(seed)  # A's initialisation: a run is determined by its seed
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        peft_model = get_peft_model(model, config)
    for module in peft_model.modules():
        drops = getattr(module, "lora_dropout", None)
        if isinstance(drops, nn.ModuleDict):
            for name, d in drops.items():
                if isinstance(d, nn.Dropout):
                    drops[name] = TrainingPassDropout(d.p)
    return peft_model


def _base_parameter(name: str) -> bool:
    return "lora_" not in name


class WithoutAdapters(nn.Module):
    """π_ref of a LoRA run: a view of the policy that runs it with its adapters disabled. No weights of its own.

    Calling the view, its `base_model`, `get_input_embeddings()` or `get_output_embeddings()` runs the
    policy's module inside `peft_model.disable_adapter()`; other attributes (`config`, `layers`, ...) are the
    policy's own, so a hook put on a block (the reward model's) fires inside the disabled pass. Its
    parameters are the policy's base weights (frozen); `requires_grad_` never touches the adapters.
    """

    def __init__(self, module: nn.Module, peft_model: nn.Module) -> None:
        super().__init__()
        self.__dict__["inner"] = module  # not registered as a submodule: the view owns nothing
        self.__dict__["peft_model"] = peft_model

        @functools.wraps(module.forward)  # the module's signature (sampling reads its keyword names)
        def forward(*args, **kwargs):
            with peft_model.disable_adapter():
                return module(*args, **kwargs)
        self.__dict__["forward"] = forward

    def __getattr__(self, name: str):
        inner = self.__dict__["inner"]
        if name == "base_model":
            return WithoutAdapters(inner.base_model, self.peft_model)
        if name in ("get_input_embeddings", "get_output_embeddings"):
            get = getattr(inner, name)
            return lambda: WithoutAdapters(get(), self.peft_model)
        return getattr(inner, name)

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        """The policy's base weights (what π_ref computes with); the adapters are not the reference's."""
        for n, p in self.inner.named_parameters(prefix, recurse, remove_duplicate):
            if _base_parameter(n):
                yield n, p

    def parameters(self, recurse: bool = True):
        return (p for _, p in self.named_parameters(recurse=recurse))


def lora_policy(policy: nn.Module, rank: int, alpha: float, dropout: float, targets: str, dtype: torch.dtype,
                seed: int = 0) -> tuple[nn.Module, list[str], WithoutAdapters]:
    """(policy with adapters, names of the adapter parameters, π_ref = the policy without them).

    The adapters are fp32 (AdamW's master weights); the frozen base is stored in `dtype`.
    """
    peft_model = add_adapters(policy, rank, alpha, dropout, targets, seed)
    model = peft_model.get_base_model()  # the transformers model itself, adapters inside
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if not names:
        raise ValueError(f"lora_target_modules={targets!r} matched no module of {type(model).__name__}")
    return prepare_policy(model, names, dtype), names, WithoutAdapters(model, peft_model)


def _peft_model(trainer):
    ref = trainer.ref
    if not isinstance(ref, WithoutAdapters):
        raise ValueError("this trainer has no LoRA adapters (lora_rank=0): save the full weights instead")
    return ref.peft_model


def save_adapter(trainer, path: str | Path) -> Path:
    """Write the trained adapters (adapter_config.json, adapter_model.safetensors) to the folder `path`.

    Load them with `peft.PeftModel.from_pretrained(base_model, path)`, base_model = the model trained.
    """
    path = Path(path)
    _peft_model(trainer).save_pretrained(str(path))
    return path


def save_merged(trainer, path: str | Path, tokenizer: bool = True) -> Path:
    """Write W' = W + (α/r)·B·A as a plain transformers model (load with `AutoModelForCausalLM.from_pretrained`).

    The merge runs on an fp32 copy (the trainer's model keeps its adapters); with `tokenizer`, the
    tokenizer is written beside it.
    """
    path = Path(path)
    merged = copy.deepcopy(_peft_model(trainer)).float().merge_and_unload()
    merged.save_pretrained(str(path))
    if tokenizer:
        trainer.tokenizer.save_pretrained(str(path))
    return path
