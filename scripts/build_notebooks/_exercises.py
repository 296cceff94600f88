"""The graded exercises of lessons 01–06, in nbgrader markup (see reinforce_edu/assignments).

Each lesson builder appends `exercises("NN")` before its summary. The solution is the
lesson's own answer; `python -m reinforce_edu.assignments release DIR` strips it for students.
"""

from _nb import exercise, exercise_setup, md

def _intro():
    return md(r"""
## Exercises

Each exercise asks for a few lines that the library already implements — write them yourself, then run the
check below: it compares your function with the library on several inputs and says what was expected, for which
input, and what to revisit. (Instructors: these cells carry nbgrader markup; see the README.)
""")


def _setup(lesson: str):
    return exercise_setup(f"setup_{lesson}", "import torch\n\nfrom reinforce_edu import exercises")


L01 = [
    *exercise("score_function_estimate", 2, r"""
    ### Exercise 1 — the score-function estimator
    For a single prompt with policy probabilities $\pi = \mathrm{softmax}(\theta)$ (shape `(A,)`), sampled arms
    `actions` (shape `(n,)`) and advantages `advantages` (shape `(n,)`), return the REINFORCE estimate
    $\hat g = \frac1n\sum_i A_i\,\nabla_\theta \log\pi_\theta(a_i)$, shape `(A,)`. Use the closed form
    $\nabla_\theta\log\mathrm{softmax}(\theta)_a = e_a - \pi$ (no autograd needed).
    """, r"""
    def score_function_estimate(probs, actions, advantages):
        ### BEGIN SOLUTION
        onehot = torch.nn.functional.one_hot(actions, probs.shape[0]).to(probs.dtype)  # (n, A)
        return (advantages[:, None] * (onehot - probs)).mean(0)  # (A,)
        ### END SOLUTION
    """, "exercises.check_score_function_estimate(score_function_estimate)",
        "exercises.check_score_function_estimate(score_function_estimate, hidden=True)"),
]

L02 = [
    *exercise("leave_one_out_baseline", 2, r"""
    ### Exercise 2 — the leave-one-out baseline
    `returns` has shape `(P, k)`: P prompts, k samples each. Return the RLOO baseline of every sample,
    $b_{ij} = \frac{1}{k-1}\sum_{l\ne j} R_{il}$, shape `(P, k)` — vectorised, no Python loop.
    """, r"""
    def leave_one_out_baseline(returns):
        ### BEGIN SOLUTION
        k = returns.shape[1]
        return (returns.sum(dim=1, keepdim=True) - returns) / (k - 1)
        ### END SOLUTION
    """, "exercises.check_leave_one_out_baseline(leave_one_out_baseline)",
        "exercises.check_leave_one_out_baseline(leave_one_out_baseline, hidden=True)"),
    *exercise("running_mean_baselines", 1, r"""
    ### Exercise 3 — the running-mean baseline
    Given the mean return of each successive batch (a list of floats) and a decay $d$, return the list of
    baselines *used* for each batch: the value before that batch is folded in (so the gradient stays unbiased).
    Start from 0; the first update takes the batch mean outright; after that $b \leftarrow d\,b + (1-d)\,\bar R$.
    """, r"""
    def running_mean_baselines(batch_means, decay):
        ### BEGIN SOLUTION
        b, used = 0.0, []
        for i, m in enumerate(batch_means):
            used.append(b)
            b = m if i == 0 else decay * b + (1 - decay) * m
        return used
        ### END SOLUTION
    """, "exercises.check_running_mean_baselines(running_mean_baselines)",
        "exercises.check_running_mean_baselines(running_mean_baselines, hidden=True)"),
    *exercise("gradient_variance", 2, r"""
    ### Exercise 4 — per-sample gradient variance
    For a `SoftmaxPolicy` (parameter `policy.logits`, shape `(P, A)`) and n samples (`prompts`, `actions`,
    `advantages`, each `(n,)`), compute the per-sample estimates $g_i = A_i\nabla_\theta\log\pi_\theta(a_i|x_i)$
    with `torch.func` (`vmap` over `grad`), and return their total variance: the trace of their sample
    covariance (divide by n − 1), as a float.
    """, r"""
    from torch.func import grad, vmap

    def gradient_variance(policy, prompts, actions, advantages):
        ### BEGIN SOLUTION
        def one(theta, x, a, adv):  # A_i · log π_θ(a_i | x_i) for one sample
            return adv * torch.log_softmax(theta[x.unsqueeze(0)][0], -1).gather(0, a.unsqueeze(0))[0]
        g = vmap(grad(one), in_dims=(None, 0, 0, 0))(policy.logits.detach(), prompts, actions, advantages)
        return float(g.reshape(len(prompts), -1).var(dim=0).sum())
        ### END SOLUTION
    """, "exercises.check_gradient_variance(gradient_variance)",
        "exercises.check_gradient_variance(gradient_variance, hidden=True)"),
]

L03 = [
    *exercise("reward_to_go", 2, r"""
    ### Exercise 5 — reward-to-go
    `rewards` and `mask` have shape `(B, T)`. Return $G_t = \sum_{s\ge t}\gamma^{s-t} m_s r_s$, and 0 wherever
    $m_t = 0$ (after EOS), shape `(B, T)`.
    """, r"""
    def reward_to_go(rewards, mask, gamma):
        ### BEGIN SOLUTION
        out = torch.zeros_like(rewards)
        running = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
        for t in reversed(range(rewards.shape[1])):
            running = rewards[:, t] * mask[:, t] + gamma * running
            out[:, t] = running * mask[:, t]
        return out
        ### END SOLUTION
    """, "exercises.check_reward_to_go(reward_to_go)", "exercises.check_reward_to_go(reward_to_go, hidden=True)"),
    *exercise("token_mean_loss", 2, r"""
    ### Exercise 6 — token-mean aggregation with a mask
    Per-token losses are $\ell_{it} = -A_{it}\log\pi_\theta(y_{it})$. Return DAPO's token mean over the whole batch:
    $\sum_{it} m_{it}\ell_{it} / \sum_{it} m_{it}$ (a scalar). Masked tokens must not count in either sum.
    """, r"""
    def token_mean_loss(logp, advantages, mask):
        ### BEGIN SOLUTION
        return -(mask * advantages * logp).sum() / mask.sum()
        ### END SOLUTION
    """, "exercises.check_token_mean_loss(token_mean_loss)", "exercises.check_token_mean_loss(token_mean_loss, hidden=True)"),
]

L04 = [
    *exercise("k3", 1, r"""
    ### Exercise 7 — the k3 estimator of KL
    With $\rho_t = \log\pi_\text{ref}(y_t) - \log\pi_\theta(y_t)$, return $k_3 = (e^{\rho_t} - 1) - \rho_t$ per token,
    shape `(B, T)`.
    """, r"""
    def k3(logp, ref_logp):
        ### BEGIN SOLUTION
        rho = ref_logp - logp
        return torch.expm1(rho) - rho
        ### END SOLUTION
    """, "exercises.check_k3(k3)", "exercises.check_k3(k3, hidden=True)"),
    *exercise("reinforce_loss", 3, r"""
    ### Exercise 8 — the corrected `reinforce_loss`
    Fix the seed's function. Inputs: `logp`, `ref_logp`, `mask` `(B, T)`, `rewards` `(B,)`, `beta`, and `k` samples
    per prompt (rows prompt-major). Return the loss whose gradient is the REINFORCE estimate for the KL-regularised
    return: per sequence $R_i = r_i - \beta\sum_t m_{it}(\log\pi_\theta - \log\pi_\text{ref})$ (k1), **detached**;
    leave-one-out baseline within each group of k; advantages $A_i = R_i - b_i$; loss
    $-\frac1B\sum_i \frac{1}{|y_i|}\sum_t m_{it} A_i \log\pi_\theta(y_{it})$. The check compares the gradient too.
    """, r"""
    def reinforce_loss(logp, ref_logp, rewards, mask, beta, k):
        ### BEGIN SOLUTION
        kl = ((logp - ref_logp) * mask).sum(dim=1)  # (B,) k1 per sequence
        returns = (rewards - beta * kl).detach()  # fault (a) fixed: no gradient through the KL in the return
        grouped = returns.view(-1, k)  # (P, k)
        baseline = ((grouped.sum(dim=1, keepdim=True) - grouped) / (k - 1)).reshape(-1)  # fault (b) fixed: RLOO
        adv = (returns - baseline)[:, None]  # (B, 1)
        per_sequence = -(adv * logp * mask).sum(dim=1) / mask.sum(dim=1)
        return per_sequence.mean()
        ### END SOLUTION
    """, "exercises.check_reinforce_loss(reinforce_loss)", "exercises.check_reinforce_loss(reinforce_loss, hidden=True)"),
]

L05 = [
    *exercise("bradley_terry_loss", 2, r"""
    ### Exercise 9 — the Bradley–Terry loss
    Given reward-model scores of the chosen and rejected answers (each `(N,)`), return the mean of
    $-\log\sigma(r_\text{chosen} - r_\text{rejected})$. It must stay finite for margins of ±100.
    """, r"""
    def bradley_terry_loss(r_chosen, r_rejected):
        ### BEGIN SOLUTION
        return -torch.nn.functional.logsigmoid(r_chosen - r_rejected).mean()
        ### END SOLUTION
    """, "exercises.check_bradley_terry_loss(bradley_terry_loss)",
        "exercises.check_bradley_terry_loss(bradley_terry_loss, hidden=True)"),
]

L06 = [
    *exercise("completion_logprobs", 2, r"""
    ### Exercise 10 — log-probs of the completion, with an EOS mask
    `logits` `(B, L, V)` come from one forward pass over `input_ids` `(B, L)` = prompt (length `prompt_length`) +
    completion (length T). Return the log-probability of each completion token, shape `(B, T)`, computed as
    gather − logsumexp (no full `log_softmax` copy), and 0 where `completion_mask` is 0 (after EOS).
    Mind the shift: the token at position p is predicted by the logits at p − 1.
    """, r"""
    def completion_logprobs(logits, input_ids, prompt_length, completion_mask):
        ### BEGIN SOLUTION
        logits = logits[:, prompt_length - 1:-1].float()  # (B, T, V): positions that predict the completion
        tokens = input_ids[:, prompt_length:]  # (B, T)
        picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, T)
        return (picked - logits.logsumexp(dim=-1)) * completion_mask
        ### END SOLUTION
    """, "exercises.check_completion_logprobs(completion_logprobs)",
        "exercises.check_completion_logprobs(completion_logprobs, hidden=True)"),
    *exercise("rloo_advantages", 1, r"""
    ### Exercise 11 — RLOO advantages
    `rewards` has shape `(B,)` with B = P·k, the k samples of each prompt adjacent. Return
    $A_i = R_i - \frac{1}{k-1}\sum_{j\ne i,\;j\in\text{group}(i)} R_j$, shape `(B,)`.
    """, r"""
    def rloo_advantages(rewards, k):
        ### BEGIN SOLUTION
        grouped = rewards.view(-1, k)  # (P, k)
        baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (k - 1)
        return (grouped - baseline).reshape(-1)
        ### END SOLUTION
    """, "exercises.check_rloo_advantages(rloo_advantages)", "exercises.check_rloo_advantages(rloo_advantages, hidden=True)"),
    *exercise("training_step", 3, r"""
    ### Exercise 12 — one training step
    Write the step the trainer takes, on a bandit policy so it runs in a blink: `rewards` `(P, k)` for `actions`
    `(P, k)` sampled from `policy` at `prompts` `(P,)`. Zero the gradients; RLOO advantages; the surrogate loss
    $-\mathrm{mean}(\log\pi\cdot A)$; backward; clip the gradient norm to 1.0; and take the optimiser step **only if**
    the loss and the gradient norm are finite (a NaN reward must leave the weights untouched). Return the loss.
    """, r"""
    def training_step(policy, optimizer, prompts, actions, rewards):
        ### BEGIN SOLUTION
        optimizer.zero_grad()
        k = rewards.shape[1]
        adv = rewards - (rewards.sum(dim=1, keepdim=True) - rewards) / (k - 1)
        loss = -(policy.log_prob(prompts, actions) * adv.detach()).mean()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), max_norm=1.0)
        if torch.isfinite(loss) and torch.isfinite(grad_norm):
            optimizer.step()
        return float(loss.detach())
        ### END SOLUTION
    """, "exercises.check_training_step(training_step)", "exercises.check_training_step(training_step, hidden=True)"),
]

_BY_LESSON = {"01": L01, "02": L02, "03": L03, "04": L04, "05": L05, "06": L06}


def exercises(lesson: str) -> list:
    """The exercise cells of lesson `lesson` ("01".."06"), with their intro and set-up."""
    return [_intro(), _setup(lesson), *_BY_LESSON[lesson]]


def with_exercises(cells: list, lesson: str) -> list:
    """Insert lesson `lesson`'s exercises just before its summary (the cell with '## Summary')."""
    at = next((i for i, c in enumerate(cells) if c.cell_type == "markdown" and "## Summary" in c.source), len(cells))
    return cells[:at] + exercises(lesson) + cells[at:]
