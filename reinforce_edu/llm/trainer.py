r"""REINFORCE / RLOO fine-tuning of a causal LM: one config, one loop, exact resume.

Each step, for P prompts and k samples of each (B = P·k rows, prompt-major):

    1. y_ij ∼ π_θ(·|x_i)                                        sampling.sample  (no grad)
    2. r_ij = r_φ(x_i, y_ij)  (proxy: the reward model)           rewards.compute_rewards (checked)
    3. log π_θ(y_ij,t|·), log π_ref(y_ij,t|·)                      logprobs.completion_logprobs
    4. R_ij = r_ij − β·KL_ij,  A_ij = R_ij − b_ij                  losses.reinforce_loss + baselines
       L = −Σ_{i,j,t} w_ijt · A_ij · log π_θ(y_ij,t|·)
    5. g = ∇L, clipped to ‖g‖ ≤ max_grad_norm; AdamW step; baseline.update(R)

The loss, baselines and KL estimators are the very functions of lessons 01–04. The gold
reward (rewards.gold_reward) is computed on the same samples for the log only: it never
reaches the loss, so the gap between proxy and gold reward shows over-optimisation.

Safety: a non-finite log-prob, loss or gradient skips the update (weights, optimiser and
baseline untouched), is logged (`skipped`) and counted. A reward function that returns
NaN or the wrong number of values raises before anything is written for that step.
Checkpoints (safetensors + JSON) are complete before their marker is renamed into place; resuming restores
weights, optimiser, RNG states, baseline and step: an interrupted run ends exactly as an uninterrupted one.

Speed (none of it changes what is computed; perf.speed lists each trick and where it was measured):
the precision the hardware does fast (perf.precision); only completion positions reach the output
layer; each prompt runs once, its key/value cache repeated for its k samples; one softmax gives log π,
its gradient and the entropy (logprobs.token_logprobs); frozen weights stored in the compute dtype; a
fused AdamW; freed memory kept for the next step (perf.allocator). With `trainable_blocks=N` only the
last N blocks and the final norm train and the backward pass stops at block L − N. With `lora_rank=r` only
LoRA adapters train (llm.lora) and π_ref is the policy with its adapters disabled, not a copy.

Methods (lesson 07): `method="reinforce"` is the loop above, with any baseline and GRPO's
`advantage_scale="group_std"`; `method="ppo"` replaces step 4–5 by `ppo.ppo_step`: a critic
(a second copy of the transformer with a scalar head), GAE advantages, and `ppo_epochs` clipped
updates on each batch. Every record also logs `gen_time` (sampling seconds) and
`peak_memory_mib` (the step's peak: CUDA allocated memory, or the process's peak RSS on a CPU).

Verifiable rewards (lesson 08): every record logs `zero_variance_groups`, the fraction of prompts whose k
rewards are all equal (no advantage under RLOO/GRPO); `group_filter="drop_zero_variance"` (DAPO) leaves them out
of the loss (core.groups), and a step where every group is such is skipped.

Around it: llm.config, llm.freeze, llm.update (one guarded step), llm.evaluation, llm.checkpoint,
llm.distributed (N processes), perf.speed; llm.minimal is the loop in one file.
Taught in notebooks/06_rlhf_small_llm.ipynb.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from reinforce_edu.core.baselines import make_baseline
from reinforce_edu.core.groups import kept_rows, select_rows, zero_variance_fraction
from reinforce_edu.core.losses import NonFiniteLossError, reinforce_loss
from reinforce_edu.llm.checkpoint import (atomic_write_text, find_checkpoint, load_checkpoint, read_log, save_checkpoint,
                                          trainer_state)
from reinforce_edu.llm.config import (CHECKPOINT, CONFIG, LOG, METHODS, PRECISION_KEY, TIME_KEYS, TrainConfig,
                                      config_from_dict)
from reinforce_edu.llm.data import load_prompt_list
from reinforce_edu.llm.distributed import processes
from reinforce_edu.llm.evaluation import evaluate
from reinforce_edu.llm.freeze import policy_and_reference
from reinforce_edu.llm.logprobs import completion_logprobs
from reinforce_edu.llm.sampling import Rollout, check_prompts, context_length, encode_prompts, sample
from reinforce_edu.llm.ppo import ValueModel, ppo_step
from reinforce_edu.llm.update import apply_update
from reinforce_edu.llm.rewards import RewardFn, compute_rewards, gold_reward, make_reward_fn
from reinforce_edu.perf.allocator import keep_freed_memory
from reinforce_edu.perf.measure import PeakMemory
from reinforce_edu.perf.precision import Precision
from reinforce_edu.perf.speed import attention_kernel, fused_adamw

__all__ = ["CHECKPOINT", "CONFIG", "LOG", "METHODS", "TIME_KEYS", "TrainConfig", "Trainer", "config_from_dict",
           "read_log", "run", "step_seed"]


def step_seed(seed: int, step: int, stream: int) -> int:
    """A distinct, reproducible seed for each (run seed, step, purpose): no RNG state to carry."""
    return (seed * 1_000_003 + step * 7919 + stream) % (2 ** 63)


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
        self.dist = processes(cfg)  # this process's share of the run: one of N under torchrun (llm.distributed)
        if self.dist.sharded != cfg.shard:  # what runs: an FSDP config's mode; "none" in one process
            self.config = cfg = dataclasses.replace(cfg, shard=self.dist.sharded)
        self.device = self.dist.device
        self.precision: Precision = self.dist.precision(cfg.dtype)  # printed once
        self.dtype = self.precision.dtype
        self.autocast = self.precision.autocast
        # fp16: the loss is scaled before backward and the gradients unscaled before clipping (_apply)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision.loss_scaling else None
        if self.device.type == "cpu" and cfg.keep_freed_memory:
            keep_freed_memory()
        if policy is None:
            from reinforce_edu.llm.models import load_model
            policy, tokenizer = load_model(cfg.model)
        self.tokenizer = tokenizer
        ctx = context_length(policy)  # every prompt must fit before training starts, not at step 500
        encode_prompts(tokenizer, self.prompts, max_length=None if ctx is None else ctx - cfg.max_new_tokens)
        auto = cfg.attention == "auto"
        self.sample_attention = "sdpa" if auto else cfg.attention  # the kernel of `rollout` and `evaluate`
        score = ("sdpa" if self.device.type == "cuda" else "eager") if auto else cfg.attention
        if hasattr(policy, "set_attn_implementation"):  # before the copies (π_ref, critic), which inherit it
            policy.set_attn_implementation(score)
        # π_ref: a frozen copy of the policy as it starts, or (LoRA) the policy with its adapters disabled
        self.policy, self.trainable, self.ref = policy_and_reference(policy.to(self.device), cfg, self.dtype)
        self.dist.shard(self.policy, self.ref, self.precision)  # shard="full"/"grad_op": FSDP (llm.sharding)
        self.reward_fn = reward_fn if reward_fn is not None else make_reward_fn(cfg.reward, self.ref, tokenizer)
        self.gold_fn = gold_fn if gold_fn is not None else gold_reward
        self.params = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = fused_adamw(self.params, cfg.learning_rate, cfg.weight_decay, self.device)
        self.critic = self.critic_optimizer = None
        self.critic_params: list = []
        if cfg.method == "ppo":  # a second copy of the transformer + a value head, trained alongside
            self.critic = ValueModel(self.policy, self.trainable)
            self.critic_params = [p for p in self.critic.parameters() if p.requires_grad]
            self.critic_optimizer = fused_adamw(self.critic_params, cfg.critic_learning_rate or cfg.learning_rate,
                                           cfg.weight_decay, self.device)
        self.baseline = self.dist.baseline(make_baseline(cfg.baseline, decay=cfg.baseline_decay,
                                                         n_prompts=len(self.prompts)))  # fed all processes' returns
        self.step = 0
        self.n_skipped = 0
        self.history: list[dict] = []
        self._append = False  # a fresh run starts a new log; a resumed one appends to the trimmed log
        self.out = Path(cfg.output_dir)
        if cfg.resume and (found := find_checkpoint(self.out)) is not None:
            self.load_checkpoint(found)

    # -- data ------------------------------------------------------------------------------
    def prompt_ids(self, step: int) -> Tensor:
        """(P,) prompt indices of a step: slices of one shuffled order per epoch, S = prompt_stride (or P) apart."""
        P, N = self.config.prompts_per_step, len(self.prompts)
        S = self.config.prompt_stride or P
        orders: dict[int, Tensor] = {}
        ids = []
        for j in range(step * S, step * S + P):  # position j in the endless stream of epochs
            epoch, pos = divmod(j, N)
            if epoch not in orders:
                gen = torch.Generator().manual_seed(step_seed(self.config.seed, epoch, 1))
                orders[epoch] = torch.randperm(N, generator=gen)
            ids.append(int(orders[epoch][pos]))
        return torch.tensor(ids)  # (P,)

    # -- one update ------------------------------------------------------------------------
    def rollout(self, prompts: list[str], k: int, seed: int, rows: tuple[int, int] | None = None) -> Rollout:
        """Sample k completions of each prompt from the current policy (no grad); rows: see sampling.sample."""
        with self.autocast(), attention_kernel(self.policy, self.sample_attention):
            return sample(self.policy, self.tokenizer, prompts, k, self.config.max_new_tokens,
                          temperature=self.config.temperature, seed=seed, rows=rows, all_done=self.dist.all_done)

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
        cfg, start, k = self.config, time.perf_counter(), self.config.samples_per_prompt
        ids, rows = self.dist.share(self.prompt_ids(self.step), k)  # this process's P/N prompts, its rows of P·k
        r = self.rollout([self.prompts[i] for i in ids], k, seed=step_seed(cfg.seed, self.step, 2), rows=rows)
        gen_time = time.perf_counter() - start
        proxy, gold = self.score(r)  # raises before anything changes or is written
        keep = kept_rows(proxy, k, cfg.group_filter)  # (B,) DAPO's filter drops zero-variance groups (core.groups)
        mask = r.completion_mask  # (B, T)
        with torch.no_grad(), self.autocast():  # the one no-grad pass: π_ref
            ref_logp = completion_logprobs(self.ref, r.input_ids, r.attention_mask, r.prompt_length,
                                           temperature=cfg.temperature, group_size=k)  # (B, T)
        with self.autocast():  # the training pass; it also gives log π_θ for the KL
            logp, entropy = completion_logprobs(self.policy, r.input_ids, r.attention_mask, r.prompt_length,
                                                temperature=cfg.temperature, return_entropy=True,
                                                group_size=k)  # (B, T)
        valid = mask > 0
        rec = {"step": self.step + 1, **self.dist.rollout_metrics(proxy, gold, entropy, mask),  # of all processes
               "zero_variance_groups": zero_variance_fraction(self.dist.gather_rows(proxy).view(-1, k))}
        grad_norm, finite = float("nan"), torch.isfinite(logp[valid]).all() and torch.isfinite(ref_logp[valid]).all()
        reason = self.dist.agree(None if finite else "non-finite log-probs")  # one process skips: all do
        if reason is None and cfg.method == "ppo":  # ppo_epochs clipped updates with a critic instead of the below
            grad_norm, reason = ppo_step(self, r, logp, ref_logp, proxy, rec)
        elif reason is None and not keep.any():
            reason = "every group has zero reward variance"
        elif reason is None:
            logp, proxy, mask, ref_logp = select_rows(keep, logp, proxy, mask, ref_logp)  # all rows unless filtered
            ids = select_rows(keep.view(-1, k)[:, 0], ids)[0]
            try:
                out = reinforce_loss(logp, proxy, mask, ref_logp=ref_logp, beta=cfg.beta,
                                     kl_estimator=cfg.kl_estimator, kl_placement=cfg.kl_placement,
                                     baseline=self.baseline, group_size=k, prompts=ids, aggregation=cfg.aggregation,
                                     advantage_scale=cfg.advantage_scale, max_tokens=self.dist.max_int(mask.shape[1]),
                                     batch=self.dist)  # batch_std: the std of all processes' returns
            except NonFiniteLossError:  # reinforce_loss refuses a non-finite loss
                reason = "non-finite loss"
            if (reason := self.dist.agree(reason)) is None:
                share = self.dist.loss_share(mask, cfg.aggregation)  # L = Σ_r share_r · L_r
                grad_norm, reason = self._apply(out.loss * share)
                if reason is None:
                    self.baseline.update(out.returns.view(-1, k), ids)
                rec.update(self.dist.loss_metrics(out, mask, share))
        self.n_skipped += reason is not None
        self.step += 1
        rec.update(grad_norm=grad_norm, clipped=bool(cfg.max_grad_norm > 0 and grad_norm > cfg.max_grad_norm),
                   skipped=reason, n_skipped=self.n_skipped, step_time=time.perf_counter() - start, gen_time=gen_time)
        return {k_: (None if isinstance(v, float) and not math.isfinite(v) else v) for k_, v in rec.items()}

    def _apply(self, loss: Tensor) -> tuple[float, str | None]:
        """Backpropagate `loss`, clip, step the optimiser(s) (policy; the critic with PPO): llm.update.apply_update.

        Returns (‖g‖ of the policy before clipping, None), or (‖g‖, "non-finite gradient") with nothing updated.
        """
        groups = [(self.params, self.optimizer)]
        if self.critic is not None:
            groups.append((self.critic_params, self.critic_optimizer))
        return apply_update(loss, groups, self.config.max_grad_norm, self.scaler, self.dist.reduce_gradients)

    # -- the loop --------------------------------------------------------------------------
    def train(self) -> list[dict]:
        """Run until `config.steps` updates are done; log every step, checkpoint as configured."""
        from tqdm.auto import tqdm
        cfg = self.config
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (cfg.progress and self.dist.is_main), desc="train")
        while self.step < cfg.steps:
            rec = self.train_step()
            self._log(rec) if self.dist.is_main else self.history.append(rec)  # the main process writes the log
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
            atomic_write_text(self.out / CONFIG, json.dumps(record, indent=2))
        with open(self.out / LOG, "a" if self._append else "w", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        self._append = True
        self.history.append(rec)

    # -- checkpoints -----------------------------------------------------------------------
    def state(self) -> dict:
        """Everything a resumed run needs to continue exactly (reinforce_edu.llm.checkpoint)."""
        return trainer_state(self)

    def save_checkpoint(self, path: str | Path | None = None) -> Path | None:
        """Write the checkpoint atomically (default: output_dir/checkpoint.json + folder); returns the marker
        on the main process (the others wait for it, and get None)."""
        return self.dist.on_main(save_checkpoint, self, path, self.state())  # the state: gathered by all

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore weights, optimiser(s), baseline, RNG states and step; trim the log to that step."""
        load_checkpoint(self, path)

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self, prompts: list[str], k: int = 1, seed: int = 0, *, max_new_tokens: int | None = None,
                 proxy: bool = True, model: str = "policy") -> dict:
        """Mean gold (and proxy) reward of k samples per prompt, with standard errors (llm.evaluation.evaluate)."""
        return evaluate(self, prompts, k, seed, max_new_tokens=max_new_tokens, proxy=proxy, model=model)


def run(config: TrainConfig, **objects) -> Trainer:
    """Build a `Trainer` from `config` (objects: see `Trainer`), train it, return it."""
    trainer = Trainer(config, **objects)
    trainer.train()
    return trainer
