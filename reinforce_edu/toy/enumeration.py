r"""Exact expectations on the toy sequence task, by enumerating every completion.

With C content tokens and at most T of them there are N = Σ_{L<T} C^L + C^T completions per prompt
(5461 for C = 4, T = 6), few enough to sum over: for any f,

    E_{y∼π(·|x)}[f(x, y)] = Σ_y π(y|x) f(x, y),     J(θ) = E_x E_y[r(x, y)],
    KL(π ‖ π_ref) = E_x Σ_y π(y|x) (log π(y|x) − log π_ref(y|x)),

and autograd through these sums gives the exact gradients the lessons compare estimators against.

Taught in notebooks/03_credit_assignment.ipynb and notebooks/04_kl_and_reference.ipynb.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from reinforce_edu.core.credit import completion_mask
from reinforce_edu.toy.sequences import ToyPolicy, ToyTask


def enumerate_completions(task: ToyTask) -> tuple[Tensor, Tensor]:
    """Every possible completion: tokens (N, T) EOS-padded and mask (N, T). N = Σ_{L<T} C^L + C^T."""
    C, T, eos = len(task.vocab), task.max_len, task.eos
    rows = []
    for L in range(T + 1):  # L content tokens, then EOS if L < T
        for body in itertools.product(range(C), repeat=L):
            rows.append(list(body) + [eos] * (T - L))
    tokens = torch.tensor(rows, dtype=torch.long)  # (N, T)
    return tokens, completion_mask(tokens, eos)


class Enumeration:
    """All (prompt, completion) pairs of a task, for exact expectations E_{y∼π(·|x)}[f] averaged over prompts.

    Completions are ordered as in `enumerate_completions`: by number of content tokens, then
    lexicographically. Log-probs come from one pass over the prefix tree (each prefix is run
    through the GRU once), far cheaper than teacher-forcing every completion.
    """

    def __init__(self, task: ToyTask) -> None:
        self.task = task
        self.tokens, self.mask = enumerate_completions(task)  # (N, T)
        N, P = self.tokens.shape[0], task.n_prompts
        self.prompt_ids = torch.arange(P).repeat_interleave(N)  # (P·N,) prompt-major
        self.all_tokens = self.tokens.repeat(P, 1)  # (P·N, T)
        self.all_mask = self.mask.repeat(P, 1)  # (P·N, T)
        self.shape = (P, N)
        self.lengths = self.mask.sum(1)  # (N,)

    def _tree(self, policy: ToyPolicy) -> list[tuple[Tensor, Tensor]]:
        """Per level L = 0..T−1: (log P(prefix) (P, C^L), log π(·|prefix) (P, C^L, V))."""
        P, C, T = self.task.n_prompts, len(self.task.vocab), self.task.max_len
        h = policy.prompt_emb(torch.arange(P))  # (P, H): one node per prompt at level 0
        prev = torch.full((P,), self.task.vocab_size, dtype=torch.long)  # BOS
        log_prefix = torch.zeros(P, 1)
        levels = []
        for L in range(T):
            h, logits = policy.step(h, prev)  # (P·C^L, H), (P·C^L, V)
            lp = torch.log_softmax(logits, dim=-1).view(P, C ** L, -1)  # (P, C^L, V)
            levels.append((log_prefix, lp))
            log_prefix = (log_prefix[..., None] + lp[..., :C]).reshape(P, C ** (L + 1))  # child = parent·C + c
            h = h.repeat_interleave(C, dim=0)  # (P·C^{L+1}, H)
            prev = torch.arange(C).repeat(P * C ** L)
        levels.append((log_prefix, None))
        return levels

    def seq_logprobs(self, policy: ToyPolicy) -> Tensor:
        """log π(y|x) for every prompt and completion: (P, N); each row's exp sums to 1."""
        levels = self._tree(policy)
        eos = self.task.eos
        parts = [log_prefix + lp[..., eos] for log_prefix, lp in levels[:-1]]  # L content tokens, then EOS
        parts.append(levels[-1][0])  # max_len content tokens, no EOS
        return torch.cat(parts, dim=1)  # (P, N)

    def entropy(self, policy: ToyPolicy) -> Tensor:
        """Mean per-token entropy E[Σ_t H(π(·|x, y_<t))] / E[|y|], averaged over prompts: scalar."""
        ent, length = 0.0, 0.0
        for log_prefix, lp in self._tree(policy)[:-1]:
            w = log_prefix.exp()  # (P, C^L) probability of reaching each prefix
            ent = ent + (w * -(lp.exp() * lp).sum(-1)).sum(1)
            length = length + w.sum(1)
        return (ent / length).mean()

    def token_logprobs(self, policy: ToyPolicy) -> Tensor:
        """log π(y_t|x, y_<t) for every pair by teacher forcing, masked to 0 after EOS: (P·N, T)."""
        return policy.log_probs(self.prompt_ids, self.all_tokens) * self.all_mask

    def expectation(self, logp_seq: Tensor, values: Tensor) -> Tensor:
        """(1/P) Σ_x Σ_y π(y|x) f(x, y). logp_seq, values: (P, N) -> scalar (differentiable)."""
        return (logp_seq.exp() * values).sum(1).mean()

    def rewards(self, reward_fn) -> Tensor:
        """reward_fn(task, prompt_ids, tokens, mask) -> (B,) evaluated on every pair: (P, N)."""
        return reward_fn(self.task, self.prompt_ids, self.all_tokens, self.all_mask).view(self.shape)

    def objective(self, policy: ToyPolicy, rewards: Tensor, ref: ToyPolicy | None = None,
                  beta: float = 0.0) -> Tensor:
        r"""J_β = (1/P) Σ_x Σ_y π(y|x) [r(x, y) − β (log π(y|x) − log π_ref(y|x))]; autograd gives ∇J_β exactly."""
        lp = self.seq_logprobs(policy)  # (P, N)
        values = rewards
        if ref is not None and beta > 0:
            with torch.no_grad():
                ref_lp = self.seq_logprobs(ref)
            values = rewards - beta * (lp - ref_lp)
        return self.expectation(lp, values)

    def kl(self, policy: ToyPolicy, ref: ToyPolicy) -> Tensor:
        """Exact sequence KL(π ‖ π_ref), averaged over prompts: scalar."""
        lp = self.seq_logprobs(policy)
        with torch.no_grad():
            ref_lp = self.seq_logprobs(ref)
        return self.expectation(lp, lp - ref_lp)

    def kl_regularised_optimum(self, ref: ToyPolicy, rewards: Tensor, beta: float) -> Tensor:
        r"""log π*_β(y|x) = log π_ref(y|x) + r(x, y)/β − log Z_β(x): the exact maximiser of J_β. -> (P, N).

        Its value is J_β(π*) = β · mean_x log Z_β(x), an upper bound for every policy.
        """
        if not beta > 0:
            raise ValueError(f"beta must be > 0 for the KL-regularised optimum, got {beta!r}")
        with torch.no_grad():
            logits = self.seq_logprobs(ref) + rewards / beta  # (P, N)
            return logits - torch.logsumexp(logits, dim=1, keepdim=True)

    def mean_length(self, policy: ToyPolicy) -> Tensor:
        """E[|y|] averaged over prompts: scalar."""
        return self.expectation(self.seq_logprobs(policy), self.lengths.expand(self.shape))
