"""The mathematics of REINFORCE, in pure torch: the estimator, baselines, credit, KL, the loss, variance.

Imports nothing from the other layers, nor transformers, nor plotting (tests/test_layout.py).
"""
