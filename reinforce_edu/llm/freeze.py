"""Which parameters train: all of them, or the last N transformer blocks and the final norm.

The frozen rest is stored in the compute dtype (bf16 where the CPU or GPU multiplies it fast) and the
backward pass stops where training starts. Taught in notebooks/06_rlhf_small_llm.ipynb.
"""

from __future__ import annotations

import torch

from reinforce_edu.llm.architecture import final_norm, transformer_blocks

__all__ = ["prepare_policy", "trainable_parameter_names", "transformer_blocks"]


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
