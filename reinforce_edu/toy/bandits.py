r"""A contextual bandit and a softmax policy: the smallest world where REINFORCE is exact.

Prompts x ∈ {0..P−1} (contexts), arms a ∈ {0..A−1}; prompt x pays r(x, a) + noise.
Each prompt has its own reward level, so a per-prompt baseline (leave-one-out) and a
global one (batch mean, running mean) really differ.

Policy: π_θ(a|x) = softmax(θ_x)_a with a table of logits θ ∈ R^{P×A}.

Objective (prompts uniform):      J(θ) = (1/P) Σ_x Σ_a π_θ(a|x) r(x, a)
Exact gradient (closed form):     ∂J/∂θ_{x,a} = (1/P) π_θ(a|x) (r(x, a) − Σ_b π_θ(b|x) r(x, b))
Score function:                   ∇_θ log π_θ(a|x) = e_x ⊗ (e_a − π_θ(·|x))

Taught in notebooks/01_bandits_policy_gradient.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from reinforce_edu.core._checks import check_nonnegative, check_positive_int, check_tensor


@dataclass
class BanditBatch:
    """One batch: P prompts, k sampled arms each, and their rewards."""

    prompts: Tensor  # (P,) long, prompt ids
    actions: Tensor  # (P, k) long, sampled arms
    rewards: Tensor  # (P, k) float, observed rewards


class SoftmaxPolicy(nn.Module):
    """π_θ(a|x) = softmax(θ_x): one row of logits per prompt. θ: (n_prompts, n_arms)."""

    def __init__(self, n_prompts: int, n_arms: int, init_std: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        check_positive_int(n_prompts, "n_prompts")
        check_positive_int(n_arms, "n_arms", minimum=2)
        check_nonnegative(init_std, "init_std")
        g = torch.Generator().manual_seed(seed)
        self.logits = nn.Parameter(init_std * torch.randn(n_prompts, n_arms, generator=g))  # (P, A)

    @property
    def n_prompts(self) -> int:
        return self.logits.shape[0]

    @property
    def n_arms(self) -> int:
        return self.logits.shape[1]

    def forward(self, prompts: Tensor) -> Tensor:
        """prompts: (...,) long -> logits (..., A)."""
        return self.logits[prompts]

    def probs(self) -> Tensor:
        """π_θ(·|x) for every prompt, detached (for reading, not for gradients): (P, A)."""
        return torch.softmax(self.logits.detach(), dim=-1)

    def log_prob(self, prompts: Tensor, actions: Tensor) -> Tensor:
        """log π_θ(a|x). prompts: (P,), actions: (P, k) -> (P, k)."""
        prompts = check_tensor(prompts, "prompts", ndim=1, integer=True)
        actions = check_tensor(actions, "actions", ndim=2, integer=True)
        if actions.shape[0] != prompts.shape[0]:
            raise ValueError(f"actions must have shape ({prompts.shape[0]}, k) to match prompts, "
                             f"got {tuple(actions.shape)}")
        logp = torch.log_softmax(self(prompts), dim=-1)  # (P, A)
        return logp.gather(1, actions)  # (P, k)

    @torch.no_grad()
    def sample(self, prompts: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw k arms per prompt from π_θ. prompts: (P,) -> actions (P, k)."""
        check_positive_int(k, "k")
        probs = torch.softmax(self(prompts), dim=-1)  # (P, A)
        return torch.multinomial(probs, k, replacement=True, generator=generator)  # (P, k)


class ContextualBandit:
    """Arms with mean reward r(x, a) (a (P, A) table) plus Gaussian noise of std `noise_std`.

    `offset` is added to every reward: it changes nothing about the optimal policy or
    ∇J, but without a baseline it inflates the variance of REINFORCE.
    """

    def __init__(self, mean_rewards: Tensor, noise_std: float = 0.0, offset: float = 0.0) -> None:
        check_tensor(mean_rewards, "mean_rewards", ndim=2, floating=True, finite=True)
        if mean_rewards.shape[1] < 2:
            raise ValueError(f"mean_rewards must have at least 2 arms (columns), got shape {tuple(mean_rewards.shape)}")
        self.noise_std = check_nonnegative(noise_std, "noise_std")
        if not isinstance(offset, (int, float)) or isinstance(offset, bool):
            raise TypeError(f"offset must be a float, got {type(offset).__name__}")
        self.offset = float(offset)
        self.base_rewards = mean_rewards.detach().clone()  # (P, A), without offset

    @property
    def mean_rewards(self) -> Tensor:
        """r(x, a), the offset included: (P, A)."""
        return self.base_rewards + self.offset

    @property
    def n_prompts(self) -> int:
        return self.base_rewards.shape[0]

    @property
    def n_arms(self) -> int:
        return self.base_rewards.shape[1]

    def make_policy(self, init_std: float = 0.0, seed: int = 0) -> SoftmaxPolicy:
        """A softmax policy sized for this bandit (uniform when init_std = 0)."""
        return SoftmaxPolicy(self.n_prompts, self.n_arms, init_std=init_std, seed=seed)

    def _check_logits(self, logits: Tensor) -> Tensor:
        check_tensor(logits, "logits", ndim=2, floating=True, finite=True)
        if logits.shape != self.base_rewards.shape:
            raise ValueError(f"logits must have shape {tuple(self.base_rewards.shape)} (prompts, arms), "
                             f"got {tuple(logits.shape)}")
        return logits

    def objective(self, logits: Tensor) -> Tensor:
        """J(θ) = (1/P) Σ_x Σ_a π_θ(a|x) r(x, a). logits: (P, A) -> scalar (differentiable)."""
        probs = torch.softmax(self._check_logits(logits), dim=-1)  # (P, A)
        return (probs * self.mean_rewards).sum(dim=-1).mean()

    def exact_gradient(self, logits: Tensor) -> Tensor:
        """∂J/∂θ_{x,a} = (1/P) π(a|x) (r(x,a) − v(x)),  v(x) = Σ_b π(b|x) r(x,b). -> (P, A)."""
        logits = self._check_logits(logits).detach()
        probs = torch.softmax(logits, dim=-1)  # (P, A)
        r = self.mean_rewards
        value = (probs * r).sum(dim=-1, keepdim=True)  # (P, 1)
        return probs * (r - value) / self.n_prompts  # (P, A)

    def values(self, logits: Tensor) -> Tensor:
        """v(x) = E_π[r | x] for every prompt: (P,)."""
        probs = torch.softmax(self._check_logits(logits).detach(), dim=-1)
        return (probs * self.mean_rewards).sum(dim=-1)

    def optimal_value(self) -> float:
        """max_θ J(θ): the mean over prompts of the best arm's reward."""
        return float(self.mean_rewards.max(dim=-1).values.mean())

    def rewards(self, prompts: Tensor, actions: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Sample rewards r(x, a) + ε, ε ~ N(0, noise_std²). prompts: (P,), actions: (P, k) -> (P, k)."""
        prompts = check_tensor(prompts, "prompts", ndim=1, integer=True)
        actions = check_tensor(actions, "actions", ndim=2, integer=True)
        if actions.shape[0] != prompts.shape[0]:
            raise ValueError(f"actions must have shape ({prompts.shape[0]}, k) to match prompts, "
                             f"got {tuple(actions.shape)}")
        mean = self.mean_rewards[prompts.unsqueeze(1), actions]  # (P, k)
        if self.noise_std == 0:
            return mean
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return mean + self.noise_std * noise

    def sample_batch(self, policy: SoftmaxPolicy, k: int, generator: torch.Generator | None = None,
                     prompts: Tensor | None = None) -> BanditBatch:
        """Sample k arms for each prompt (all prompts by default) and their rewards."""
        check_positive_int(k, "k")
        if prompts is None:
            prompts = torch.arange(self.n_prompts)
        actions = policy.sample(prompts, k, generator=generator)  # (P, k)
        return BanditBatch(prompts, actions, self.rewards(prompts, actions, generator=generator))


def make_bandit(n_prompts: int = 4, n_arms: int = 5, noise_std: float = 0.5, offset: float = 0.0,
                seed: int = 0) -> ContextualBandit:
    """A random contextual bandit whose prompts sit at different reward levels.

    r(x, a) = level_x + spread_x · u_{x,a}, level_x ~ U(0, 3), spread_x ~ U(0.5, 1.5), u ~ U(0, 1).
    """
    check_positive_int(n_prompts, "n_prompts")
    check_positive_int(n_arms, "n_arms", minimum=2)
    g = torch.Generator().manual_seed(seed)
    level = 3.0 * torch.rand(n_prompts, 1, generator=g)  # (P, 1)
    spread = 0.5 + torch.rand(n_prompts, 1, generator=g)  # (P, 1)
    u = torch.rand(n_prompts, n_arms, generator=g)  # (P, A)
    return ContextualBandit(level + spread * u, noise_std=noise_std, offset=offset)
