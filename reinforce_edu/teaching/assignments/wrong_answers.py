"""The usual wrong answers to each exercise, as code a student might hand in: synthetic classes are made of these.

{lesson stem: {grade_id: [wrong answer bodies], grade_id + ":library": [answers that call the library]}}.
Each body replaces the stub of its solution cell (`submissions.fill`). tests/test_classroom.py checks
that every one of them scores 0.
"""

_MEASURE = ("n_batches = 2000\nbatches = sample_batches(bandit, policy, n_batches, K, seed=1)\n"
            "rewards, actions = batches.rewards[:, 0].double(), batches.actions[:, 0]\n"
            "adv = rewards - rewards.mean(dim=1, keepdim=True)\n"
            "g = (adv[..., None] * (torch.nn.functional.one_hot(actions, len(probs)).double() - probs)).mean(dim=1)\n"
            "s = g @ exact / exact.square().sum()\n")

WRONG_ANSWERS: dict[str, dict[str, list[str]]] = {
    "02_baselines_and_variance": {
        "leave_one_out_baseline": [
            "k = returns.shape[1]\nreturn (returns.sum(dim=1, keepdim=True) - returns) / k",  # off by one: k, not k − 1
            "return returns.mean(dim=1, keepdim=True).expand_as(returns)",  # the self-inclusive mean
        ],
        "leave_one_out_baseline:library": [
            "from reinforce_edu.core.baselines import LeaveOneOutBaseline\nreturn LeaveOneOutBaseline()(returns)",
        ],
        "running_mean_baselines": [  # the current batch folded in before it is used
            "b, used = 0.0, []\nfor i, m in enumerate(batch_means):\n    b = m if i == 0 else decay * b + (1 - decay) * m\n"
            "    used.append(b)\nreturn used",
        ],
        "running_mean_baselines:library": [
            "from reinforce_edu.core.baselines import RunningMeanBaseline\nbase, used = RunningMeanBaseline(decay), []\n"
            "for m in batch_means:\n    used.append(base.value)\n    base.update(torch.tensor([[float(m)]]))\nreturn used",
        ],
        "gradient_variance": [
            "rows = []\nfor x, a, adv in zip(prompts, actions, advantages):  # a loop: one backward pass per sample\n"
            "    theta = policy.logits.detach().clone().requires_grad_(True)\n"
            "    (g,) = torch.autograd.grad(adv * torch.log_softmax(theta[x], -1)[a], theta)\n"
            "    rows.append(g.reshape(-1))\nreturn float(torch.stack(rows).var(dim=0).sum())",
            "def one(theta, x, a, adv):\n    return adv * torch.log_softmax(theta[x.unsqueeze(0)][0], -1).gather(0, a.unsqueeze(0))[0]\n"
            "g = vmap(grad(one), in_dims=(None, 0, 0, 0))(policy.logits.detach(), prompts, actions, advantages)\n"
            "return float(g.reshape(len(prompts), -1).var(dim=0, unbiased=False).sum())  # biased: divides by n",
        ],
        "gradient_variance:library": [
            "from reinforce_edu.core.per_sample import per_sample_grads\n"
            "def loss(out_fn, x, a, adv):\n    return adv * torch.log_softmax(out_fn(x.unsqueeze(0))[0], -1).gather(0, a.unsqueeze(0))[0]\n"
            "g = per_sample_grads(policy, loss, prompts, actions, advantages, params=['logits'])\n"
            "return float(g.var(dim=0).sum())",
        ],
        "baseline_shrink": [
            _MEASURE + "return float(s.mean()), float(s.std()), 'supported', n_batches  # the spread of one batch, not the SE",
            _MEASURE + "return float(s.mean()), float(s.std() / n_batches ** 0.5), 'supported', n_batches  # the wrong decision",
        ],
        "self_inclusive_shrink": ["A baseline reduces the variance of the gradient."],
    },
}
