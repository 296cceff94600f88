r"""Sharded data parallel (PyTorch FSDP2, `torch.distributed.fsdp.fully_shard`): the model split across processes.

With N processes each holding the whole model (llm.distributed), every process stores all weights W, their
gradients g and AdamW's two moments: 4·|W| fp32 numbers a process. Sharding splits them (Rajbhandari et al.,
2020, "ZeRO"; Zhao et al., 2023, "PyTorch FSDP"):

    shard="full"     W, g, moments split 1/N     (ZeRO-3's partitioning; FSDP FULL_SHARD)
                     each block's W gathered for its forward, freed, gathered again for its backward
    shard="grad_op"  g and moments split 1/N     (ZeRO-2's partitioning; FSDP SHARD_GRAD_OP)
                     each block's W gathered for its forward and kept until its backward is done

What stays as in the unsharded run, so that the run is the one-process run:
    gradient   FSDP reduce-scatters the mean of g after backward; times N it is Σ_r ∇(s_r·L_r) = ∇L
               (llm.distributed's loss weights s_r), and each process holds its 1/N rows of it
    norm       ‖g‖ over the shards (a DTensor reduction), then every process clips and steps its shard
    sampling   every process runs as many decoding steps as the longest (`any_running`): each forward
               gathers weights from all processes, so none may stop early
    π_ref      the frozen copy is sharded alike (its forwards are collective too)
    checkpoint the whole tensors (`full`) are gathered on every process and written by the main one;
               `place` splits them again on load, so a checkpoint is the same file for any N and shard

Where the shard unit is each decoder block (`model._no_split_modules`) plus the rest of the model.
Not supported (a clear error): fp16 loss scaling, PPO's critic, LoRA, and weights of two dtypes in one model
(dtype bf16 with frozen blocks stores the frozen weights in bf16).
Taught in the README ("Several processes"); tests/test_sharding.py runs 2 processes on a CPU.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

SHARDS = ("none", "full", "grad_op")


def shard_mode(config) -> str:
    """config.shard, or what `accelerate launch` with an FSDP config asks for (its FSDP_* variables).

    FSDP_RESHARD_AFTER_FORWARD true: "full"; false: "grad_op". A DeepSpeed config is refused.
    """
    env = os.environ
    if env.get("ACCELERATE_USE_DEEPSPEED", "") == "true":
        raise ValueError("accelerate launch was given a DeepSpeed config; this trainer does not run DeepSpeed's engine. "
                         "ZeRO-2's partitioning (gradients and optimiser state split) is configs/accelerate/"
                         "fsdp_zero2.yaml and ZeRO-3's is fsdp.yaml, both PyTorch FSDP (reinforce_edu.llm.sharding)")
    if env.get("ACCELERATE_USE_FSDP", "") != "true":
        return config.shard
    if env.get("FSDP_VERSION", "2") != "2" or env.get("FSDP_OFFLOAD_PARAMS", "false").lower() == "true":
        raise ValueError("the FSDP config must set fsdp_version: 2 and fsdp_offload_params: false "
                         "(see configs/accelerate/fsdp.yaml)")
    return "full" if env.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() in ("true", "1") else "grad_op"


def is_sharded(t: Tensor) -> bool:
    """True for a DTensor (a parameter, gradient or moment split by FSDP)."""
    if not torch.distributed.is_available():  # a build without torch.distributed shards nothing
        return False
    from torch.distributed.tensor import DTensor
    return isinstance(t, DTensor)


def full(t: Tensor) -> Tensor:
    """The whole tensor of a shard (a collective: every process must call it), else `t` itself."""
    return t.full_tensor() if is_sharded(t) else t


def place(whole: Tensor, like: Tensor) -> Tensor:
    """`whole` split as `like` is (this process's shard of it), or `whole` on like's device if unsharded."""
    if not is_sharded(like):
        return whole.to(like.device)
    from torch.distributed.tensor import distribute_tensor
    return distribute_tensor(whole.to(like.device, like.dtype), like.device_mesh, like.placements)


def blocks(model: nn.Module) -> list[nn.Module]:
    """The decoder blocks: modules whose class the model names in `_no_split_modules` (LlamaDecoderLayer, ...)."""
    names = set(next((m._no_split_modules for m in model.modules() if getattr(m, "_no_split_modules", None)), []))
    found = [m for m in model.modules() if type(m).__name__ in names]
    if not found:
        raise ValueError(f"{type(model).__name__} names no decoder block class in _no_split_modules "
                         f"({sorted(names)}); shard needs one shard unit per block: use --shard none")
    return found


def check_shardable(model: nn.Module, name: str) -> None:
    """FSDP needs every parameter of a model in one dtype: a ValueError naming the dtypes found."""
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    if len(dtypes) > 1:
        raise ValueError(f"shard needs the {name}'s weights in one dtype, found {dtypes}: with dtype bf16/fp16 the "
                         f"frozen weights (trainable_blocks, LoRA) are stored in it. Use --dtype fp32, train every "
                         f"parameter, or --shard none")


class TiedHead(nn.Module):
    """The output layer of a model whose input embedding is its output weight (tie_word_embeddings).

    logits = h · Eᵀ with E read from the embedding at call time: the gathered E after the sharded base
    model's forward, so the output layer's gradient joins the embedding's in FSDP's reduction.
    """

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        self.__dict__["embedding"] = embedding  # not a submodule: E belongs to the base model's shard unit

    def forward(self, h: Tensor) -> Tensor:
        return torch.nn.functional.linear(h, self.embedding.weight)  # (..., H) -> (..., V)


def shard_model(model: nn.Module, mode: str, mesh) -> nn.Module:
    """Split `model` in place across the processes of `mesh`: one FSDP unit per block, then the base model.

    The base model (`model.base_model`: embedding, blocks, final norm) is the FSDP root, since the library
    calls it directly (sampling, log-probs, reward features); its own weights stay gathered from its forward
    to its backward. An untied output layer stays whole in every process (llm.distributed sums its gradient);
    a tied one reads the embedding's gathered weight (`TiedHead`). mode: "full" or "grad_op" (module docstring).
    FSDP averages the gradients over the processes: llm.distributed multiplies them by N (Σ_r g_r).
    """
    if mode not in SHARDS[1:]:
        raise ValueError(f"mode must be one of {SHARDS[1:]}, got {mode!r}")
    from torch.distributed.fsdp import fully_shard
    base, head = model.base_model, model.get_output_embeddings()
    tied = head is not None and head.weight is base.get_input_embeddings().weight
    for block in blocks(model):
        fully_shard(block, mesh=mesh, reshard_after_forward=mode == "full")
    fully_shard(base, mesh=mesh, reshard_after_forward=False)
    if tied:
        model.set_output_embeddings(TiedHead(base.get_input_embeddings()))
    return model


def shard_policy_and_reference(policy: nn.Module, ref: nn.Module, mode: str, device: torch.device,
                               world_size: int) -> None:
    """Shard the policy and π_ref (a frozen copy) alike, on a mesh of all `world_size` processes."""
    from torch.distributed.device_mesh import init_device_mesh
    if getattr(ref, "peft_model", None) is not None:
        raise ValueError(f"shard={mode!r} with LoRA is not supported (its π_ref is the policy with the adapters "
                         f"off); LoRA's state is small: use --shard none")
    check_shardable(policy, "policy")
    check_shardable(ref, "reference model")
    mesh = init_device_mesh(device.type, (world_size,))
    for m in (policy, ref):
        shard_model(m, mode, mesh)


def full_optimizer_state(state: dict) -> dict:
    """An optimiser's state_dict with each sharded moment gathered whole (collective): the one-process layout."""
    return {**state, "state": {i: {k: full(v) for k, v in s.items()} for i, s in state["state"].items()}}


def place_optimizer_state(state: dict, optimizer: torch.optim.Optimizer) -> dict:
    """The inverse of `full_optimizer_state` for this process: each moment split as its parameter is."""
    params = [p for group in optimizer.param_groups for p in group["params"]]  # the state's indices
    placed = {}
    for i, s in state["state"].items():
        p = params[int(i)]
        placed[i] = {k: place(v, p) if torch.is_tensor(v) and v.shape == p.shape and v.dim() > 0 else v
                     for k, v in s.items()}
    return {**state, "state": placed}
