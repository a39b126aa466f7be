from pathlib import Path

import pytest

TESTS = Path(__file__).parent


@pytest.fixture
def models_on_path(monkeypatch):
    """Makes ``inhernet_models:small_cnn`` resolvable by ``hkt_core.models.build_model``."""
    monkeypatch.syspath_prepend(str(TESTS))
    return "inhernet_models"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is fastest, and fair to other processes on the machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
