r"""An LLM in miniature: a tiny autoregressive policy whose every quantity can be computed exactly.

Vocabulary: a few content tokens ("a", "b", "c", "d") and EOS (written "."); prompts are ids
0..P−1; a completion has at most `max_len` tokens and stops at EOS. With 4 content tokens and
max_len = 6 there are Σ_{L<6} 4^L + 4^6 = 5461 possible completions per prompt, few enough to
enumerate: the objective J, the KL to a reference and their exact gradients follow by summing
over all of them (and autograd).

Policy: a GRU over the previous token, started from a prompt embedding,

    h_0 = E_p[x],   h_t = GRU(h_{t−1}, E_y[y_{t−1}]),   π_θ(y_t | x, y_<t) = softmax(W h_t + c)

    log π_θ(y|x) = Σ_t m_t log π_θ(y_t | x, y_<t)      (m_t = 1 up to and including EOS)

The GRU cell is written out with linear layers so that `torch.func.vmap` (per-sample
gradients) works through it. `warm_up` fits the policy to demonstrations with cross-entropy,
a miniature SFT step, so that RL can start from a strong initialisation. The exact sums over every
completion live in toy.enumeration.

Taught in notebooks/03_credit_assignment.ipynb and notebooks/04_kl_and_reference.ipynb.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from reinforce_edu.core._checks import check_positive_int, check_tensor
from reinforce_edu.core.credit import completion_mask


@dataclass(frozen=True)
class ToyTask:
    """The toy vocabulary and prompts. Prompt p's reference answer is `targets[p]` followed by EOS."""

    vocab: str = "abcd"
    """content tokens, one character each; EOS has id len(vocab) and is written '.'"""
    max_len: int = 6
    """T, the most tokens a completion may have (EOS included)"""
    targets: tuple[str, ...] = ("ab", "cdc", "bdab", "dca")
    """the reference completion of each prompt (its first token is the 'key' of the delayed reward)"""

    def __post_init__(self) -> None:
        check_positive_int(self.max_len, "max_len")
        if len(set(self.vocab)) != len(self.vocab) or "." in self.vocab or len(self.vocab) < 1:
            raise ValueError(f"vocab must be distinct characters without '.', got {self.vocab!r}")
        for t in self.targets:
            if len(t) + 1 > self.max_len or any(c not in self.vocab for c in t):
                raise ValueError(f"target {t!r} must use vocab {self.vocab!r} and fit max_len={self.max_len} with EOS")

    @property
    def n_prompts(self) -> int:
        return len(self.targets)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + 1

    @property
    def eos(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> Tensor:
        """'ab' -> tensor [0, 1, EOS, EOS, ...] of length max_len (EOS-padded)."""
        ids = [self.vocab.index(c) for c in text] + [self.eos] * (self.max_len - len(text))
        return torch.tensor(ids[: self.max_len])

    def decode(self, tokens: Tensor) -> str:
        """(T,) ids -> 'ab.' (stops after the first EOS)."""
        out = []
        for t in tokens.tolist():
            out.append("." if t == self.eos else self.vocab[t])
            if t == self.eos:
                break
        return "".join(out)

    def target_tokens(self) -> Tensor:
        """The reference completions, EOS-padded: (P, T) long."""
        return torch.stack([self.encode(t) for t in self.targets])


@dataclass
class SequenceBatch:
    """Sampled completions, B = P·k rows, prompt-major (prompt 0's k samples first)."""

    prompts: Tensor  # (P,) prompt ids of the groups
    prompt_ids: Tensor  # (B,) prompt id of each row
    tokens: Tensor  # (B, T) long, EOS-padded after the first EOS
    mask: Tensor  # (B, T) float, 1 through EOS
    group_size: int = field(default=1)


class ToyPolicy(nn.Module):
    """Autoregressive GRU policy: forward(prompt_ids (B,), tokens (B, T)) -> logits (B, T, V)."""

    def __init__(self, task: ToyTask, hidden: int = 16, seed: int = 0) -> None:
        super().__init__()
        check_positive_int(hidden, "hidden")
        self.task = task
        torch.manual_seed(seed)
        V, H = task.vocab_size, hidden
        self.prompt_emb = nn.Embedding(task.n_prompts, H)  # h_0
        self.token_emb = nn.Embedding(V + 1, H)  # id V is BOS
        self.gates = nn.Linear(2 * H, 2 * H)  # update z and reset r from [x, h]
        self.cand_x = nn.Linear(H, H)
        self.cand_h = nn.Linear(H, H, bias=False)
        self.head = nn.Linear(H, V)
        self.logit_offset = 0.0  # α of `sharpened_copy`: logits z + α·stopgrad(z)

    def step(self, h: Tensor, prev: Tensor) -> tuple[Tensor, Tensor]:
        """One GRU step. h: (B, H), prev: (B,) token ids -> (new h (B, H), logits (B, V))."""
        x = self.token_emb(prev)  # (B, H)
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], dim=-1))).chunk(2, dim=-1)
        n = torch.tanh(self.cand_x(x) + self.cand_h(r * h))
        h = (1 - z) * n + z * h
        logits = self.head(h)  # (B, V)
        if self.logit_offset:  # the values of (1 + α)·z, the gradient of z
            logits = logits + self.logit_offset * logits.detach()
        return h, logits

    def forward(self, prompt_ids: Tensor, tokens: Tensor) -> Tensor:
        """Teacher-forced logits of every position. prompt_ids: (B,), tokens: (B, T) -> (B, T, V)."""
        B, T = tokens.shape
        bos = torch.full((B, 1), self.task.vocab_size, dtype=tokens.dtype, device=tokens.device)
        inputs = torch.cat([bos, tokens[:, :-1]], dim=1)  # (B, T): BOS, y_1..y_{T−1}
        h = self.prompt_emb(prompt_ids)  # (B, H)
        logits = []
        for t in range(T):
            h, lg = self.step(h, inputs[:, t])
            logits.append(lg)
        return torch.stack(logits, dim=1)  # (B, T, V)

    def log_probs(self, prompt_ids: Tensor, tokens: Tensor) -> Tensor:
        """log π_θ(y_t | x, y_<t) of the given tokens: (B, T) (unmasked: apply the mask yourself)."""
        logits = self(prompt_ids, tokens)  # (B, T, V)
        return token_log_probs(logits, tokens)

    @torch.no_grad()
    def sample(self, prompts: Tensor, k: int = 1, generator: torch.Generator | None = None) -> SequenceBatch:
        """k completions per prompt, sampled token by token. prompts: (P,) -> SequenceBatch with B = P·k."""
        check_tensor(prompts, "prompts", ndim=1, integer=True)
        check_positive_int(k, "k")
        ids = prompts.repeat_interleave(k)  # (B,) prompt-major
        B, T, eos = ids.shape[0], self.task.max_len, self.task.eos
        h = self.prompt_emb(ids)
        prev = torch.full((B,), self.task.vocab_size, dtype=torch.long)  # BOS
        done = torch.zeros(B, dtype=torch.bool)
        out = torch.full((B, T), eos, dtype=torch.long)
        for t in range(T):
            h, logits = self.step(h, prev)
            y = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)  # (B,)
            y = torch.where(done, torch.full_like(y, eos), y)
            out[:, t] = y
            done |= y == eos
            prev = y
        return SequenceBatch(prompts, ids, out, completion_mask(out, eos), k)


def token_log_probs(logits: Tensor, tokens: Tensor) -> Tensor:
    """gather(log_softmax(logits)) at the tokens. logits: (B, T, V), tokens: (B, T) -> (B, T)."""
    return torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def token_entropy(logits: Tensor, mask: Tensor) -> Tensor:
    """Mean entropy H(π(·|x, y_<t)) over the unmasked positions. (B, T, V), (B, T) -> scalar."""
    logp = torch.log_softmax(logits, dim=-1)
    ent = -(logp.exp() * logp).sum(-1)  # (B, T)
    return (ent * mask).sum() / mask.sum()


def scaled_copy(policy: ToyPolicy, inverse_temperature: float) -> ToyPolicy:
    """A copy whose output logits are multiplied by `inverse_temperature` (> 1: more concentrated)."""
    out = copy.deepcopy(policy)
    with torch.no_grad():
        out.head.weight.mul_(inverse_temperature)
        out.head.bias.mul_(inverse_temperature)
    return out


def sharpened_copy(policy: ToyPolicy, inverse_temperature: float) -> ToyPolicy:
    r"""A copy sampling from softmax(s·z) whose gradient keeps the scale of z: a logit offset, not a rescale.

    Its logits are z_θ + (s − 1)·c with the offset c = z_θ held constant (`torch.detach`), so at the
    current θ: π' = softmax(s·z_θ), as in `scaled_copy`, but ∇_θ log π'(y) = (∂z/∂θ)ᵀ(e_y − π') carries no
    factor s (`scaled_copy`, whose output layer is s times larger, has the same gradient for that layer and s
    times this one for every parameter below it). For measuring at θ, not for training.
    """
    if not inverse_temperature > 0:
        raise ValueError(f"inverse_temperature must be > 0, got {inverse_temperature}")
    out = copy.deepcopy(policy)
    out.logit_offset = float(inverse_temperature) - 1.0
    return out


def demonstrations(task: ToyTask, n: int, noise: float = 0.2, seed: int = 0) -> SequenceBatch:
    """n demonstrations per prompt: the target with each content token replaced at random w.p. `noise`."""
    check_positive_int(n, "n")
    g = torch.Generator().manual_seed(seed)
    prompts = torch.arange(task.n_prompts)
    tokens = task.target_tokens().repeat_interleave(n, dim=0)  # (P·n, T)
    content = tokens != task.eos
    flip = (torch.rand(tokens.shape, generator=g) < noise) & content
    rand = torch.randint(0, len(task.vocab), tokens.shape, generator=g)
    tokens = torch.where(flip, rand, tokens)
    return SequenceBatch(prompts, prompts.repeat_interleave(n), tokens, completion_mask(tokens, task.eos), n)


def warm_up(policy: ToyPolicy, demos: SequenceBatch, steps: int = 200, lr: float = 0.03) -> list[float]:
    """Supervised warm-up (SFT): minimise −Σ_t m_t log π(y_t|x, y_<t) / Σ m on the demonstrations."""
    check_positive_int(steps, "steps")
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        logp = policy.log_probs(demos.prompt_ids, demos.tokens)  # (B, T)
        loss = -(logp * demos.mask).sum() / demos.mask.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses
