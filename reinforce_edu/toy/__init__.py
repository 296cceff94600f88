"""The worlds where every quantity is exact: a contextual bandit and a tiny autoregressive policy.

Built on `reinforce_edu.core` only (tests/test_layout.py).
"""
