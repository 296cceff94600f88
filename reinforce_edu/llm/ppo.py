r"""PPO for a causal LM, the reference point of lesson 07: the critic and the trainer's PPO step.

The comparison REINFORCE/RLOO is measured against (Schulman et al., 2017; as used for RLHF by
Ouyang et al., 2022). The mathematics — per-token rewards r_t = −β·k_t + r·[t = |y|], GAE
Â_t = Σ_l (γλ)^l δ_{t+l}, the clipped surrogate −min(ρ_t Â_t, clip(ρ_t, 1 ± ε) Â_t), the clipped value
loss and `ppo_update`'s passes over a batch — lives in `reinforce_edu.core.ppo` (re-exported here), so
that the toy sequence task (`reinforce_edu.toy.methods`) runs the same update with a toy critic.

The critic `ValueModel` is a second copy of the language model's transformer with a scalar head:
the "~2× memory" of the seed's table. The first pass of each step also supplies π_old and V_old
(both models are still unchanged then), so no extra no-grad pass is needed for them.

In N processes (`llm.distributed`) each process updates on its P/N prompts with `batch=trainer.dist`: the
whitening, the loss shares s_r of policy and value loss and the logged figures are those of the whole batch
(`core.split`), the gradients of policy and critic are summed across processes (`trainer._apply`), and a
non-finite loss in one process ends the passes in all: every epoch is the one-process epoch.

Taught in notebooks/07_comparison.ipynb.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from reinforce_edu.core._checks import check_tensor
from reinforce_edu.core.ppo import (clipped_surrogate, clipped_value_loss, gae, ppo_update, token_rewards,  # noqa: F401
                                    whiten)
from reinforce_edu.llm.architecture import hidden_size
from reinforce_edu.llm.logprobs import completion_logprobs
from reinforce_edu.llm.sampling import position_ids

__all__ = ["ValueModel", "ppo_step", "clipped_surrogate", "clipped_value_loss", "gae", "ppo_update",
           "token_rewards", "whiten"]


class ValueModel(nn.Module):
    """The critic V_φ(s_t): a copy of the policy's transformer (`model.base_model`, any family) + a linear head.

    policy: a transformers causal LM (copied, never shared). trainable: names of the policy's parameters
    that train (e.g. `trainer.trainable_parameter_names`); the copy's same parameters train, the rest are
    frozen; None = all. The head starts at zero (V ≡ 0: no baseline until it has learned one).
    """

    def __init__(self, policy: nn.Module, trainable: list[str] | None = None) -> None:
        super().__init__()
        base = policy.base_model
        self.body = copy.deepcopy(base)
        prefix = next((n for n, m in policy.named_children() if m is base), "")
        train = None if trainable is None else {n[len(prefix) + 1:] for n in trainable if n.startswith(prefix + ".")}
        for n, p in self.body.named_parameters():
            p.requires_grad_(train is None or n in train)
        self.head = nn.Linear(hidden_size(policy), 1)  # H: GPT-2's n_embd, Llama's hidden_size, ...
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.to(next(base.parameters()).device)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, prompt_length: int) -> Tensor:
        """V_φ(s_t) for every completion token t: (B, L) -> (B, T) fp32, T = L − prompt_length.

        The state before token t is read at column prompt_length − 1 + t (the column whose logits
        predict y_t), as in `logprobs.completion_logprobs`.
        """
        check_tensor(input_ids, "input_ids", ndim=2, integer=True)
        L = input_ids.shape[1]
        if isinstance(prompt_length, bool) or not isinstance(prompt_length, int) or not 1 <= prompt_length < L:
            raise ValueError(f"prompt_length must be an int in [1, {L - 1}] (L = {L}), got {prompt_length!r}")
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask,
                           position_ids=position_ids(attention_mask), use_cache=False).last_hidden_state  # (B, L, H)
        h = hidden[:, prompt_length - 1:L - 1].float()  # (B, T, H)
        with torch.autocast(h.device.type, enabled=False):
            return self.head(h).squeeze(-1)  # (B, T) fp32


def ppo_step(trainer, r, logp: Tensor, ref_logp: Tensor, proxy: Tensor, rec: dict) -> tuple[float, str | None]:
    """The trainer's step with method="ppo": `ppo_epochs` updates of `trainer` on rollout `r` (`ppo_update`).

    The training pass the trainer already made (`logp`, (B, T)) is the first pass's π_θ and π_old; the
    critic is `trainer.critic`; each loss goes through `trainer._apply` (clipping, the optimisers, the
    non-finite guard). Fills `rec` with PPO's diagnostics; returns (‖g‖ of the first update, skip reason).
    """
    cfg, k = trainer.config, trainer.config.samples_per_prompt
    first = [logp]
    failed: list[str] = []

    def policy_logp() -> Tensor:
        if first:
            return first.pop()
        with trainer.autocast():
            return completion_logprobs(trainer.policy, r.input_ids, r.attention_mask, r.prompt_length,
                                       temperature=cfg.temperature, group_size=k)

    def critic_values() -> Tensor:
        with trainer.autocast():
            return trainer.critic(r.input_ids, r.attention_mask, r.prompt_length)  # (B, T)

    def apply(loss: Tensor) -> float | None:
        reason = trainer.dist.agree(None if torch.isfinite(loss) else "non-finite loss")  # one refuses: all do
        if reason is not None:
            failed.append(reason)
            return None
        norm, reason = trainer._apply(loss)
        if reason is not None:
            failed.append(reason)
            return None
        return norm

    stats = ppo_update(policy_logp, critic_values, proxy, r.completion_mask, apply, ref_logp=ref_logp,
                       beta=cfg.beta, kl_estimator=cfg.kl_estimator, epochs=cfg.ppo_epochs,
                       clip_range=cfg.clip_range, value_clip_range=cfg.value_clip_range, gamma=1.0,
                       lam=cfg.gae_lambda, aggregation=cfg.aggregation, batch=trainer.dist)  # all processes' batch
    gather = trainer.dist.gather_rows  # (B_r,) -> (B,)
    rec.update(loss=stats["pg_loss"] + stats["value_loss"], kl=gather(stats["kl"]).mean().item(),
               returns=gather(stats["returns"]).mean().item(), advantage_std=stats["advantage_std"],
               value_loss=stats["value_loss"], clip_fraction=stats["clip_fraction"],
               approx_kl=stats["approx_kl"], ppo_epochs_done=stats["epochs_done"])
    if stats["epochs_done"] == 0:  # the very first update was refused: a skipped step
        return float("nan"), failed[0] if failed else "non-finite gradient"
    return stats["grad_norms"][0], None
