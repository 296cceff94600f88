"""An answer that calls the library's own implementation scores nothing, with a message that says why;
the library is back, unchanged, as soon as the check is over."""

import sys
import types

import pytest
import torch

import reinforce_edu.core.baselines as baselines
from reinforce_edu.core.baselines import LeaveOneOutBaseline
from reinforce_edu.teaching import exercises as ex
from reinforce_edu.teaching.exercises._integrity import library_unavailable


def _loo_by_library(returns):  # uses the name this module imported: found in the caller's globals
    return LeaveOneOutBaseline()(returns)


def test_library_answer_fails_with_a_message_naming_the_exercise():
    with pytest.raises(ex.LibraryUnavailableError, match="this exercise asks you to write leave_one_out_baseline yourself"):
        ex.check_leave_one_out_baseline(_loo_by_library)
    assert LeaveOneOutBaseline is baselines.LeaveOneOutBaseline  # restored
    torch.testing.assert_close(LeaveOneOutBaseline()(torch.tensor([[1.0, 3.0]])), torch.tensor([[3.0, 1.0]]))


def test_import_inside_the_function_and_module_attribute_are_blocked_too():
    def imports_inside(returns):
        from reinforce_edu.core.baselines import LeaveOneOutBaseline as L
        return L()(returns)

    def via_module(returns):
        return baselines.LeaveOneOutBaseline()(returns)

    for fn in (imports_inside, via_module):
        with pytest.raises(ex.LibraryUnavailableError, match="leave_one_out_baseline"):
            ex.check_leave_one_out_baseline(fn)


def test_a_notebook_namespace_in_main_is_patched():
    main = types.ModuleType("__main__")
    exec("from reinforce_edu.core.kl import kl_estimate\n"
         "def k3(logp, ref_logp):\n    return kl_estimate(logp, ref_logp, 'k3')\n", main.__dict__)
    saved = sys.modules["__main__"]
    sys.modules["__main__"] = main
    try:
        with pytest.raises(ex.LibraryUnavailableError, match="write k3 yourself"):
            ex.check_k3(main.k3)
    finally:
        sys.modules["__main__"] = saved
    assert main.kl_estimate.__module__ == "reinforce_edu.core.kl"


def test_a_module_first_imported_during_the_call_is_patched():
    name = "reinforce_edu.llm.reward_head"
    was = sys.modules.pop(name, None)  # as if no one had imported it yet
    try:
        def bt(r_chosen, r_rejected):
            from reinforce_edu.llm.reward_head import bradley_terry_loss
            return bradley_terry_loss(r_chosen, r_rejected)

        with pytest.raises(ex.LibraryUnavailableError, match="write bradley_terry_loss yourself"):
            ex.check_bradley_terry_loss(bt)
    finally:
        if was is not None:
            sys.modules[name] = was


def test_library_unavailable_rejects_a_single_string():
    with pytest.raises(TypeError, match="list of dotted names"):
        with library_unavailable("x", "reinforce_edu.core.kl.kl_estimate"):
            pass


def test_every_checker_blocks_the_library_it_compares_with():
    # the corrected loss of lesson 04, the GRPO normalisation, PPO's surrogate: each by the library -> blocked
    from reinforce_edu.core.losses import reinforce_loss
    from reinforce_edu.llm.ppo import clipped_surrogate

    def loss_by_library(logp, ref_logp, rewards, mask, beta, k):
        return reinforce_loss(logp, rewards, mask, ref_logp=ref_logp, beta=beta, baseline=LeaveOneOutBaseline(),
                              group_size=k, aggregation="sum").loss

    def grpo_by_library(rewards, k, eps):
        return reinforce_loss(torch.zeros(len(rewards), 1), rewards, torch.ones(len(rewards), 1), group_size=k,
                              advantage_scale="group_std").advantages[:, 0]

    def ppo_by_library(logp, old_logp, advantages, mask, clip_range):
        return clipped_surrogate(logp, old_logp, advantages, mask, clip_range)[0]

    for check, fn in ((ex.check_reinforce_loss, loss_by_library), (ex.check_grpo_advantages, grpo_by_library),
                      (ex.check_ppo_clip_loss, ppo_by_library)):
        with pytest.raises(ex.LibraryUnavailableError, match="yourself"):
            check(fn)
