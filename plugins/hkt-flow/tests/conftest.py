import pytest
import torch


@pytest.fixture(autouse=True)
def _few_threads():
    """Tests share two cores with other work: keep torch on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
