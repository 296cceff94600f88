"""Held-out accuracy of a linear reward head on each layer of SmolLM2 (one pass, every layer); stores JSON.

    python scripts/reward_layers.py            # ~5 min on a 2-core AMD EPYC Zen 3 (one thread)

Features in fp32 (as scripts/train_reward_model.py computes them), mean-pooled over the answer, on the
train and held-out pairs of data/preferences.jsonl; one head per layer, fitted as in lesson 05
(`train_head`, 300 full-batch Adam steps, L2 0.3). Writes data/results/reward_layers.json, read by lesson 05.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle threads sleep, not spin (shared CPU)

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reinforce_edu.llm.data import load_preferences  # noqa: E402
from reinforce_edu.llm.layer_probe import AllLayersModel, probe_layers  # noqa: E402
from reinforce_edu.llm.models import load_model  # noqa: E402
from reinforce_edu.llm.reward_model import pair_features  # noqa: E402
from reinforce_edu.perf.provenance import write_result  # noqa: E402


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=str(ROOT / "data/results/reward_layers.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    backbone, tokenizer = load_model(dtype=torch.float32)
    n_layers = backbone.config.num_hidden_layers
    model = AllLayersModel(backbone, tokenizer, layer=n_layers)
    train, held = load_preferences("train"), load_preferences("heldout")
    t0 = time.perf_counter()
    train_c, train_r = pair_features(model, train)  # (N, L·H) each
    held_c, held_r = pair_features(model, held)  # (M, L·H) each
    seconds = time.perf_counter() - t0
    acc, se, correct = probe_layers(train_c, train_r, held_c, held_r, n_layers)
    for layer, (a, s) in enumerate(zip(acc, se), start=1):
        print(f"layer {layer:>2}: held-out accuracy {a:.3f} ± {s:.3f}", flush=True)
    write_result(args.output, __file__, argv, ROOT, n_layers=n_layers, train_pairs=len(train),
                 heldout_pairs=len(held), feature_seconds=round(seconds, 1), layers=list(range(1, n_layers + 1)),
                 accuracy=acc, accuracy_se=se,
                 correct=["".join(str(int(c)) for c in row) for row in correct.tolist()])  # per layer: "0110…"


if __name__ == "__main__":
    main(sys.argv[1:])
