"""Shared test fixtures."""

import pytest
import torch


def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_thread_module():
    """Tiny tensors: one thread avoids thread hand-off costs (several times faster on a busy CPU)."""
    yield from _single_thread()


@pytest.fixture
def one_thread():
    """The same, for one test."""
    yield from _single_thread()
