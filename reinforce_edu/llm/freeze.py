"""Which parameters train: all of them, the last N transformer blocks and the final norm, or LoRA adapters.

The frozen rest is stored in the compute dtype (bf16 where the CPU or GPU multiplies it fast) and the
backward pass stops where training starts. π_ref is a frozen copy of the policy as it starts, or, with
LoRA (llm.lora), the policy itself with its adapters disabled. Taught in notebooks/06_rlhf_small_llm.ipynb.
"""

from __future__ import annotations

import torch

from reinforce_edu.core.kl import frozen_copy
from reinforce_edu.llm.architecture import final_norm, transformer_blocks
from reinforce_edu.perf.speed import store_frozen_linears

__all__ = ["policy_and_reference", "prepare_policy", "trainable_parameter_names", "transformer_blocks"]


def trainable_parameter_names(model: torch.nn.Module, trainable_blocks: int = 0) -> list[str]:
    """Names of the parameters that train: all (0), or those of the last N blocks + the final norm.

    Any layout of llm.architecture (Llama's `model.layers`, GPT-2's `transformer.h`, ...). With N > 0
    the output layer does not train: in a model with tied embeddings (SmolLM2, GPT-2) it *is* the
    input embedding, and training it would send the backward pass through every block.
    """
    if trainable_blocks == 0:
        return [n for n, _ in model.named_parameters()]
    blocks = transformer_blocks(model)
    if trainable_blocks > len(blocks):
        raise ValueError(f"trainable_blocks={trainable_blocks} but the model has {len(blocks)} blocks")
    keep = {id(p) for b in blocks[-trainable_blocks:] for p in b.parameters()}
    norm = final_norm(model)  # model.model.norm (Llama, Qwen2), model.transformer.ln_f (GPT-2), ...
    if norm is not None:
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


def policy_and_reference(policy: torch.nn.Module, cfg,
                         dtype: torch.dtype) -> tuple[torch.nn.Module, list[str], torch.nn.Module]:
    """(policy ready to train, names of its trainable parameters, π_ref) for a TrainConfig `cfg`.

    cfg.lora_rank > 0: adapters on the targets (llm.lora.lora_policy; A drawn from cfg.seed), π_ref = the
    policy with them disabled. Else the parameters of `cfg.trainable_blocks` train and π_ref is a frozen copy,
    its linear weights stored in `dtype`. Set the attention kernel before: the copy inherits it.
    """
    if cfg.lora_rank > 0:
        from reinforce_edu.llm.lora import lora_policy  # imports peft only for a LoRA run
        return lora_policy(policy, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules, dtype,
                           seed=cfg.seed)
    trainable = trainable_parameter_names(policy, cfg.trainable_blocks)
    policy = prepare_policy(policy, trainable, dtype)
    ref = frozen_copy(policy)  # π_ref: the policy as it starts, frozen
    store_frozen_linears(ref.base_model, dtype)  # its blocks' matmul weights, any layout
    return policy, trainable, ref
