r"""Which layer's features does a linear reward head read best? One forward pass, every layer probed.

For each layer l = 1..L the answer's pooled hidden state φ_l(x, y) gets its own Bradley–Terry head
(`train_head`, the lesson's fit), and the head is scored on held-out pairs:

    accuracy_l = (1/M) Σ_m 1[r_l(x_m, y_c,m) > r_l(x_m, y_r,m)],     SE = sqrt(a(1 − a)/M)

(the binomial SE, treating the M pairs as independent). `AllLayersModel.features` returns the L
pooled states side by side, (B, L·H), from a single pass with output_hidden_states; layer L is the
final output after the last norm, as in `RewardModel(layer=L)`.

Run by scripts/reward_layers.py; read in notebooks/05_reward_model.ipynb.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from reinforce_edu.core._checks import check_positive_int, check_same_shape, check_tensor
from reinforce_edu.llm.reward_head import RewardHead, train_head
from reinforce_edu.llm.reward_model import RewardModel


class AllLayersModel(RewardModel):
    """A RewardModel whose `features` are every layer's pooled hidden states side by side: (B, L·H)."""

    def _hidden(self, ids: Tensor, attn: Tensor, position_ids: Tensor) -> Tensor:
        out = self.backbone.base_model(input_ids=ids, attention_mask=attn, position_ids=position_ids,
                                       output_hidden_states=True, use_cache=False)
        return torch.cat(out.hidden_states[1:], dim=-1)  # (B, T, L·H): after layer 1, ..., after layer L


def layer_slice(features: Tensor, layer: int, n_layers: int) -> Tensor:
    """The columns of layer `layer` (1..n_layers) in (N, L·H) features: (N, H)."""
    check_tensor(features, "features", ndim=2)
    check_positive_int(n_layers, "n_layers")
    if not 1 <= layer <= n_layers or features.shape[1] % n_layers:
        raise ValueError(f"layer must lie in 1..{n_layers} and features ({features.shape[1]} columns) split into "
                         f"{n_layers} equal blocks")
    H = features.shape[1] // n_layers
    return features[:, (layer - 1) * H: layer * H]


def probe_layers(train_c: Tensor, train_r: Tensor, held_c: Tensor, held_r: Tensor, n_layers: int,
                 **fit_kwargs) -> tuple[list[float], list[float], Tensor]:
    """Fit one head per layer on the train pairs; held-out accuracy and its SE per layer.

    All inputs (N, L·H) / (M, L·H). Returns (accuracy (L,), SE (L,), correct (L, M) bool: which held-out
    pairs each layer ranks right, for paired comparisons between layers).
    """
    check_same_shape(train_c, "train_c", train_r, "train_r")
    check_same_shape(held_c, "held_c", held_r, "held_r")
    correct = []
    for layer in range(1, n_layers + 1):
        pick = [layer_slice(x, layer, n_layers) for x in (train_c, train_r, held_c, held_r)]
        head = RewardHead(pick[0].shape[1])
        train_head(head, pick[0], pick[1], **fit_kwargs)
        with torch.no_grad():
            correct.append(head(pick[2]) > head(pick[3]))  # (M,)
    correct = torch.stack(correct)  # (L, M)
    acc = correct.double().mean(1)
    M = correct.shape[1]
    return acc.tolist(), [math.sqrt(a * (1 - a) / M) for a in acc.tolist()], correct
