r"""A learned value baseline for the LLM: the frozen model's last-block features and a ridge-regression head.

Features: φ(x) = the last hidden state (after the final norm) at the prompt's last token, from the
frozen model, no grad, fp32 — the LLM counterpart of the toy critic's GRU state (`toy.value`).
Head: V(x) = w·φ(x) + b, fitted in closed form on PAST (prompt, return) pairs, the intercept unpenalised:

    X = [Φ, 1]  (n, H+1),   D = diag(1, …, 1, 0)
    (w, b) = argmin ‖Xβ − y‖² + λ‖w‖²  =  (XᵀX + λD)⁻¹ Xᵀy                              (ridge)
           ⇔  w = Φ_cᵀ (K + λI)⁻¹ (y − ȳ),  b = ȳ − Φ̄·w,   Φ_c = Φ − Φ̄,  K = Φ_c Φ_cᵀ      (its dual, n×n)

λ is chosen by leave-one-out on the past data, exact and in closed form (no refits): with the hat
matrix H_λ = X (XᵀX + λD)⁻¹ Xᵀ = 11ᵀ/n + K (K + λI)⁻¹ (one eigendecomposition of K serves every λ)
and residuals e = y − H_λ y,

    LOO(λ) = (1/n) Σ_i ( e_i / (1 − (H_λ)_ii) )²,        λ over the grid s·10^{-3, -2.5, …, 3} ∪ {∞},

s = ‖Φ − Φ̄‖²_F / n (the mean squared norm of a centred feature row). λ = ∞ is the constant
V = ȳ, the past mean — what a running mean fed the same past data holds; so LOO chooses between
"the features help" and "a constant does as well". Fit on one row per past prompt (the mean of its
returns): k copies of the same φ would let leave-one-out keep the left-out prompt's twin.

V is then evaluated on the prompts of the batch being measured and frozen into a
`core.baselines.FixedValueBaseline`: b_ij = V(x_i), independent of the batch's own samples, so the
estimate stays unbiased.

Taught in notebooks/06_rlhf_small_llm.ipynb (section 5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from reinforce_edu.core._checks import check_positive_int, check_tensor
from reinforce_edu.core.baselines import FixedValueBaseline
from reinforce_edu.llm.sampling import encode_prompts, position_ids

DEFAULT_GRID = tuple(10.0 ** (e / 2) for e in range(-6, 7)) + (math.inf,)  # λ / s


@torch.no_grad()
def prompt_features(model: nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: list[str], *,
                    chat: bool = True, batch_size: int = 16) -> Tensor:
    """φ(x): the final-norm hidden state at each prompt's last token, fp32, no grad. P prompts -> (P, H).

    Prompts are tokenised as `sampling.sample` does (chat template, left padding, positions that skip
    the padding), so φ(x) is what the policy reads its first answer token from.
    """
    check_positive_int(batch_size, "batch_size")
    out = []
    for start in range(0, len(prompts), batch_size):
        ids, mask = encode_prompts(tokenizer, prompts[start:start + batch_size], chat=chat)  # (b, L)
        device = next(model.parameters()).device
        ids, mask = ids.to(device), mask.to(device)
        h = model.base_model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).last_hidden_state
        out.append(h[:, -1].float().cpu())  # (b, H): left padding puts every last token at -1
    return torch.cat(out)  # (P, H)


def _check_xy(features: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    check_tensor(features, "features", ndim=2, floating=True, finite=True)
    check_tensor(targets, "targets", ndim=1, floating=True, finite=True)
    if targets.shape[0] != features.shape[0]:
        raise ValueError(f"targets must have shape ({features.shape[0]},), one per row of features "
                         f"{tuple(features.shape)}, got {tuple(targets.shape)}")
    if features.shape[0] < 2:
        raise ValueError(f"need at least 2 past prompts to fit and validate, got {features.shape[0]}")
    return features.double(), targets.double()


def _centred(phi: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Φ_c = Φ − Φ̄ and the eigendecomposition K = Φ_c Φ_cᵀ = U diag(Λ) Uᵀ: (n, F), ((n,), (n, n))."""
    phi_c = phi - phi.mean(0)  # (n, F)
    lams, U = torch.linalg.eigh(phi_c @ phi_c.T)  # (n,), (n, n)
    return phi_c, (lams.clamp_min(0.0), U)


def ridge_fit(features: Tensor, targets: Tensor, lam: float) -> tuple[Tensor, float]:
    """(w, b) = (XᵀX + λD)⁻¹ Xᵀy, computed in the dual: w = Φ_cᵀ(K + λI)⁻¹(y − ȳ), b = ȳ − Φ̄·w.

    (n, F), (n,) -> (F,) fp64, float. λ = ∞ gives w = 0, b = ȳ. The dual costs an n×n solve
    (n past prompts) instead of (F+1)×(F+1) (F = 576 on SmolLM2).
    """
    phi, y = _check_xy(features, targets)
    if not lam > 0:
        raise ValueError(f"lam must be > 0 (or inf), got {lam}")
    if math.isinf(lam):
        return torch.zeros(phi.shape[1], dtype=phi.dtype), float(y.mean())
    phi_c = phi - phi.mean(0)  # (n, F)
    alpha = torch.linalg.solve(phi_c @ phi_c.T + lam * torch.eye(len(y), dtype=phi.dtype), y - y.mean())  # (n,)
    w = phi_c.T @ alpha  # (F,)
    return w, float(y.mean() - phi.mean(0) @ w)


def _loo(y: Tensor, eig: tuple[Tensor, Tensor], lam: float) -> Tensor:
    """e_i / (1 − H_ii) with H = 11ᵀ/n + U diag(Λ/(Λ+λ)) Uᵀ (centring makes the intercept separate)."""
    n = len(y)
    if math.isinf(lam):
        return (y - y.mean()) / (1 - 1 / n)
    lams, U = eig
    hat = U @ torch.diag(lams / (lams + lam)) @ U.T + 1.0 / n  # (n, n)
    return (y - hat @ y) / (1 - hat.diagonal())


def loo_residuals(features: Tensor, targets: Tensor, lam: float) -> Tensor:
    """Leave-one-out residuals y_i − V_{−i}(x_i) = e_i / (1 − H_ii), without refitting. -> (n,) fp64."""
    phi, y = _check_xy(features, targets)
    if not lam > 0:
        raise ValueError(f"lam must be > 0 (or inf), got {lam}")
    return _loo(y, _centred(phi)[1], lam)


@dataclass
class ValueHead:
    """V(x) = w·φ(x) + b, with the λ leave-one-out chose and the LOO mean squared error of each λ tried."""

    w: Tensor  # (F,) fp64
    b: float
    lam: float
    loo_mse: dict[float, float]

    def predict(self, features: Tensor) -> Tensor:
        """V(x) for each row of features. (P, F) -> (P,) fp32."""
        check_tensor(features, "features", ndim=2, floating=True, finite=True)
        if features.shape[1] != self.w.shape[0]:
            raise ValueError(f"features must have {self.w.shape[0]} columns, got {tuple(features.shape)}")
        return (features.double() @ self.w + self.b).float()

    def baseline(self, features: Tensor) -> FixedValueBaseline:
        """b_ij = V(x_i) for the P prompts whose features (P, F) are given, in that order."""
        return FixedValueBaseline(self.predict(features))


def fit_value_head(features: Tensor, targets: Tensor, grid: tuple[float, ...] = DEFAULT_GRID) -> ValueHead:
    """Fit V on past data: one row per past prompt, targets (n,) = its mean return; λ = s·α, α in `grid`, by LOO."""
    phi, y = _check_xy(features, targets)
    phi_c, eig = _centred(phi)
    s = float(phi_c.pow(2).sum()) / phi.shape[0]  # mean squared norm of a centred row
    loo = {}
    for alpha in grid:
        lam = math.inf if math.isinf(alpha) or s == 0 else s * alpha  # identical rows: only the constant
        loo[lam] = float(_loo(y, eig, lam).pow(2).mean())
    lam = min(loo, key=loo.get)
    w, b = ridge_fit(phi, y, lam)
    return ValueHead(w=w, b=b, lam=lam, loo_mse=loo)
