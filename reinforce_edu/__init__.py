"""reinforce-edu: REINFORCE, baselines and gradient variance, from bandits to a real LLM."""

__version__ = "0.1.0"
