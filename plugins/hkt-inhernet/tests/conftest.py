from pathlib import Path

import pytest

TESTS = Path(__file__).parent


@pytest.fixture
def models_on_path(monkeypatch):
    """Makes ``inhernet_models:small_cnn`` resolvable by ``hkt_core.models.build_model``."""
    monkeypatch.syspath_prepend(str(TESTS))
    return "inhernet_models"
