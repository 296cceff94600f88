r"""The trainer in N processes (`torchrun` or `accelerate launch`): the same run as one process, split.

Each step's P prompts (`Trainer.prompt_ids`) are cut into N contiguous shares of P/N prompts; process r
samples, scores and backpropagates its share (all k samples of each prompt, so a prompt's group, and
with it leave-one-out and GRPO's group std, never spans two processes). What makes the N-process run
the one-process run:

    sampling      row i draws the uniform numbers it draws in the whole batch (sampling.sample(rows=...))
    loss          L = Σ_r s_r · L_r,  s_r = B_r / B  (n_r / n tokens for "token_mean"),
                  L_r the loss of process r's rows; "constant" divides by the longest completion of all
    gradient      g = Σ_r ∇(s_r · L_r): one all-reduce (sum) after backward, before the norm and the
                  clipping, so every process clips, skips (fp16 overflow included) and steps alike
    baseline      called on, and updated with, the returns of all processes (`GatheredBaseline`):
                  batch mean, running mean and per-prompt values are those of the whole batch
    metrics       computed on the rows gathered from all processes: the log of the one-process run
    skips         a non-finite log-prob or loss in one process skips the step in all
    batch-wide    method="ppo" (whitening, token counts, clip fraction, approximate KL, in every epoch) and
                  advantage_scale="batch_std" (the std of all returns) take the group as their `batch`
                  (core.split: its `total` and `gather_rows`); the critic's gradients are summed with the policy's

Only the main process (rank 0) writes config.json, metrics.jsonl, checkpoints, the progress bar and
the prints; a checkpoint holds nothing process-specific (sampling draws from `step_seed`, not from
RNG state), so a run resumes with any N. `OneProcess` is the single-process case, where every
operation is the identity: importing and using this module needs no process group.
group_filter runs in one process only (each process would drop a different number of rows). Every
process holds the whole model (data parallel), unless `shard` splits it (llm.sharding: FSDP2, set by an
FSDP config of `accelerate launch` or by --shard); a DeepSpeed config is refused with a clear error.

Taught in the README ("Several processes"); tests/test_distributed.py runs 2 processes on a CPU.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from reinforce_edu.core.baselines import Baseline
from reinforce_edu.llm.sharding import is_sharded, shard_mode
from reinforce_edu.perf.precision import Precision, choose_precision, resolve_device


def check_share(prompts_per_step: int, world_size: int) -> int:
    """P / N, the prompts each process takes; a ValueError naming both if N does not divide P."""
    if prompts_per_step % world_size:
        raise ValueError(f"prompts_per_step={prompts_per_step} must be divisible by the number of processes "
                         f"{world_size}: each process samples P/N whole prompts (all k samples of each)")
    return prompts_per_step // world_size


class OneProcess:
    """One process of `world_size` (default: the only one). Collectives are the identity here."""

    def __init__(self, device: torch.device, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.device, self.rank, self.world_size = device, rank, world_size
        self.sharded = "none"  # llm.sharding's mode: "none" in one process

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the files and prints."""
        return self.rank == 0

    def share(self, ids: Tensor, k: int = 1) -> tuple[Tensor, tuple[int, int]]:
        """(P,) prompt ids of the step -> (P/N,) this process's contiguous slice, and its rows (first, total)
        of the P·k sampled rows (k per prompt, prompt-major): what `sampling.sample(rows=...)` takes."""
        n = check_share(ids.shape[0], self.world_size)
        return ids[self.rank * n:(self.rank + 1) * n], (self.rank * n * k, ids.shape[0] * k)

    def precision(self, dtype: str) -> Precision:
        """The precision `dtype` chooses on this device (decided, and printed, once)."""
        return choose_precision(self.device, dtype)

    def baseline(self, baseline: Baseline) -> Baseline:
        """The baseline as every process must call and update it."""
        return baseline

    # -- collectives: the identity in one process ----------------------------------------------
    def gather_rows(self, x: Tensor) -> Tensor:
        """(B_r, ...) -> (B, ...): the rows of all processes in rank order ((B_r, T_r) padded with 0 to max T)."""
        return x

    def total(self, x: Tensor) -> Tensor:
        """Σ_r x_r (a scalar tensor)."""
        return x

    def max_int(self, n: int) -> int:
        """max_r n_r."""
        return int(n)

    def agree(self, reason: str | None) -> str | None:
        """The first process's skip reason, if any process has one (so that all skip)."""
        return reason

    def reduce_gradients(self, params: list) -> None:
        """p.grad ← Σ_r p.grad_r for every parameter with a gradient."""

    def shard(self, policy: torch.nn.Module, ref: torch.nn.Module, precision: Precision) -> None:
        """Split the models across the processes (llm.sharding); nothing to split in one process."""

    def all_done(self, done: Tensor) -> bool:
        """(B_r,) rows that have ended -> True once every row of every process has."""
        return bool(done.all())

    def barrier(self) -> None:
        """Wait for every process."""

    def on_main(self, fn, *args):
        """fn(*args) on the main process while the others wait for it; its result there, None elsewhere."""
        result = fn(*args) if self.is_main else None
        self.barrier()
        return result

    # -- the step's loss scale and its global metrics (the same code in one and in N processes) --
    def loss_share(self, mask: Tensor, aggregation: str) -> float:
        """s_r: the weight of this process's loss in the global one (1.0 in one process)."""
        if self.world_size == 1:
            return 1.0
        n = mask.sum() if aggregation == "token_mean" else torch.tensor(float(mask.shape[0]), device=mask.device)
        return float(n / self.total(n.double()))

    def rollout_metrics(self, proxy: Tensor, gold: Tensor, entropy: Tensor, mask: Tensor) -> dict:
        """Mean proxy and gold reward, entropy per token and completion length over the whole batch."""
        proxy, gold, entropy, mask = (self.gather_rows(t.detach()) for t in (proxy, gold, entropy, mask))
        valid = mask > 0
        return {"proxy_reward": proxy.mean().item(), "gold_reward": gold.mean().item(),
                "entropy": entropy[valid].mean().item(), "length": mask.sum(dim=1).float().mean().item()}

    def loss_metrics(self, out, mask: Tensor, share: float) -> dict:
        """loss, mean KL, mean return and the std of the advantages over the whole batch (out: LossOutput)."""
        adv, valid = self.gather_rows(out.advantages), self.gather_rows(mask) > 0
        return {"loss": self.total(out.loss.detach() * share).item(), "kl": self.gather_rows(out.kl).mean().item(),
                "returns": self.gather_rows(out.returns).mean().item(),
                "advantage_std": adv[valid].std().item() if valid.sum() > 1 else 0.0}


class ProcessGroup(OneProcess):
    """One of N processes launched by `torchrun` / `accelerate launch` (Accelerate's `PartialState`)."""

    def __init__(self, device: torch.device, shard: str = "none") -> None:
        from accelerate import PartialState
        import torch.distributed as dist
        self._state, self._dist = PartialState(cpu=device.type == "cpu"), dist  # gloo on a CPU, nccl on GPUs
        if device.type == "cuda" and device.index is None:  # one GPU per process
            device = torch.device("cuda", self._state.local_process_index)
        super().__init__(device, self._state.process_index, self._state.num_processes)
        self.sharded = shard

    def shard(self, policy: torch.nn.Module, ref: torch.nn.Module, precision: Precision) -> None:
        if self.sharded == "none":
            return
        if precision.loss_scaling:
            raise ValueError(f"shard={self.sharded!r} runs without fp16 loss scaling: use --dtype bf16 or fp32")
        from reinforce_edu.llm.sharding import shard_policy_and_reference
        shard_policy_and_reference(policy, ref, self.sharded, self.device, self.world_size)

    def all_done(self, done: Tensor) -> bool:
        if self.sharded == "none":
            return bool(done.all())
        left = torch.tensor(int((~done).sum()), device=self.device)
        self._dist.all_reduce(left)  # a sharded forward is collective: decode while any process has a row left
        return int(left) == 0

    def precision(self, dtype: str) -> Precision:
        """Decided on the main process (dtype="auto" times a matmul there) and sent to the others."""
        box = [choose_precision(self.device, dtype) if self.is_main else None]
        self._dist.broadcast_object_list(box, src=0)
        return box[0]

    def baseline(self, baseline: Baseline) -> Baseline:
        return GatheredBaseline(baseline, self)

    def gather_rows(self, x: Tensor) -> Tensor:
        x = x.contiguous()
        if x.dim() == 2:
            width = self.max_int(x.shape[1])
            x = torch.nn.functional.pad(x, (0, width - x.shape[1]))  # (B_r, T) zero-padded: mask 0 there
        parts = [torch.empty_like(x) for _ in range(self.world_size)]
        self._dist.all_gather(parts, x)
        return torch.cat(parts)  # (B, ...)

    def total(self, x: Tensor) -> Tensor:
        x = x.detach().clone()
        self._dist.all_reduce(x)
        return x

    def max_int(self, n: int) -> int:
        t = torch.tensor(int(n), device=self.device)
        self._dist.all_reduce(t, op=self._dist.ReduceOp.MAX)
        return int(t)

    def agree(self, reason: str | None) -> str | None:
        reasons: list = [None] * self.world_size
        self._dist.all_gather_object(reasons, reason)
        return next((r for r in reasons if r is not None), None)

    def reduce_gradients(self, params: list) -> None:
        for g in (p.grad for p in params if p.grad is not None and is_sharded(p.grad)):
            g.mul_(self.world_size)  # FSDP's mean of the shard -> the sum Σ_r
        grads = [p.grad for p in params if p.grad is not None and not is_sharded(p.grad)]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])  # one message (trainable weights are fp32)
        self._dist.all_reduce(flat)  # Σ_r
        for g, part in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(part.view_as(g))

    def barrier(self) -> None:
        self._state.wait_for_everyone()


class GatheredBaseline(Baseline):
    """A baseline called on, and updated with, the (P, k) returns of all processes; each gets its rows back."""

    def __init__(self, inner: Baseline, group: OneProcess) -> None:
        self.inner, self.group, self.name = inner, group, inner.name

    def _all(self, returns: Tensor, prompts: Tensor | None) -> tuple[Tensor, Tensor | None]:
        return self.group.gather_rows(returns), None if prompts is None else self.group.gather_rows(prompts)

    def __call__(self, returns: Tensor, prompts: Tensor | None = None) -> Tensor:
        b = self.inner(*self._all(returns, prompts))  # (P, k)
        first = self.group.rank * returns.shape[0]
        return b[first:first + returns.shape[0]]  # (P_r, k)

    def update(self, returns: Tensor, prompts: Tensor | None = None) -> None:
        self.inner.update(*self._all(returns, prompts))

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)

    def __repr__(self) -> str:
        return f"GatheredBaseline({self.inner!r})"


def launched() -> bool:
    """True inside `torchrun` / `accelerate launch` with more than one process (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def processes(config) -> OneProcess:
    """This process's place in the run: `ProcessGroup` when launched with N > 1 processes, else `OneProcess`.

    config: the run's TrainConfig. Raises ValueError for what N processes cannot run exactly.
    """
    shard = shard_mode(config)
    device = resolve_device(config.device)
    if not launched():
        return OneProcess(device)
    if shard != "none" and config.method == "ppo":
        raise ValueError(f"shard={shard!r} shards the policy and π_ref, not PPO's critic: use shard='none' with PPO")
    world = int(os.environ["WORLD_SIZE"])
    if config.advantage_scale == "batch_std" and config.prompts_per_step * config.samples_per_prompt < 2 * world:
        raise ValueError(f"advantage_scale='batch_std' needs at least 2 rows in each process: prompts_per_step x "
                         f"samples_per_prompt = {config.prompts_per_step * config.samples_per_prompt} rows for "
                         f"{world} processes")
    if config.group_filter != "none":
        raise ValueError("group_filter runs in one process (each process would drop a different number of rows)")
    check_share(config.prompts_per_step, world)
    return ProcessGroup(device, shard)
