"""REINFORCE on a real causal LM: models, data, rewards, sampling, log-probs, the trainer and its CLI, PPO.

The only layer that imports transformers. `minimal` is the whole RLOO loop in one file, to read or copy.
"""
