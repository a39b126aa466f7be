import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Caches and default data folders go to a temporary $HKT_HOME."""
    monkeypatch.setenv("HKT_HOME", str(tmp_path / "hkt-home"))
