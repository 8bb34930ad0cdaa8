from pathlib import Path

import pytest

from rarec.data import make_interactions

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def synthetic():
    """A small synthetic catalogue with planted structure (same every run)."""
    return make_interactions(n_users=200, n_items=80, n_categories=4, random_state=7)


@pytest.fixture(scope="session")
def ml100k_dir():
    path = SHARED_DATA / "ml-100k"
    if not (path / "ml-100k.inter").exists():
        pytest.skip(f"MovieLens-100K not found at {path}")
    return path


@pytest.fixture(scope="session")
def beauty_dir():
    path = SHARED_DATA / "amazon-beauty"
    if not (path / "amazon-beauty.inter").exists():
        pytest.skip(f"Amazon Beauty not found at {path}")
    return path
