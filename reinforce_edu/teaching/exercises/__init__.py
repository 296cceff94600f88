"""Checkers for the course exercises: immediate, specific feedback inside the notebook.

Each ``check_*`` runs a student's function on a few inputs and compares it with a reference
computed by the library. On a mismatch it raises `ExerciseError` saying which input, what was
expected, what came back, which usual mistake gives exactly that answer, and which lesson section
to revisit; on success it prints one line. A stub that still raises `NotImplementedError` fails the
check with that error. Grade cells call ``check_*(fn)`` and, between nbgrader's hidden test markers,
``check_*(fn, hidden=True)`` on further inputs.

While the student's function runs, the library's own implementation of the same concept is
unavailable (`_integrity.library_unavailable`): an answer that calls it fails with
`LibraryUnavailableError`, "this exercise asks you to write ... yourself".

One module per lesson; taught alongside every lesson; see `reinforce_edu.teaching.assignments` for
release and grading.
"""

from reinforce_edu.teaching.exercises._integrity import LibraryUnavailableError, library_unavailable
from reinforce_edu.teaching.exercises.lesson01 import check_score_function_estimate
from reinforce_edu.teaching.exercises.lesson02 import (check_gradient_variance, check_leave_one_out_baseline,
                                                       check_running_mean_baselines)
from reinforce_edu.teaching.exercises.lesson03 import check_reward_to_go, check_token_mean_loss
from reinforce_edu.teaching.exercises.lesson04 import check_k3, check_reinforce_loss
from reinforce_edu.teaching.exercises.lesson05 import check_bradley_terry_loss
from reinforce_edu.teaching.exercises.lesson06 import check_completion_logprobs, check_importance_weights
from reinforce_edu.teaching.exercises.lesson07 import check_grpo_advantages, check_ppo_clip_loss
from reinforce_edu.teaching.exercises.lesson08 import check_dr_grpo_advantages, check_pass_at_k, check_zero_variance_filter
from reinforce_edu.teaching.exercises.measurement import check_baseline_shrink
from reinforce_edu.teaching.exercises.training_step import check_training_step
from reinforce_edu.teaching.feedback import ExerciseError

__all__ = ["ExerciseError", "LibraryUnavailableError", "library_unavailable",
           "check_score_function_estimate", "check_leave_one_out_baseline", "check_running_mean_baselines",
           "check_gradient_variance", "check_baseline_shrink", "check_reward_to_go", "check_token_mean_loss",
           "check_k3", "check_reinforce_loss", "check_bradley_terry_loss", "check_completion_logprobs",
           "check_importance_weights", "check_training_step", "check_grpo_advantages", "check_ppo_clip_loss",
           "check_pass_at_k", "check_zero_variance_filter", "check_dr_grpo_advantages"]
