from pathlib import Path

import pytest

from rarec.data import make_interactions

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def synthetic():
    """A small synthetic catalogue with planted structure (same every run)."""
    return make_interactions(n_users=200, n_items=80, n_categories=4, random_state=7)


def shared_data(folder: str, name: str) -> Path:
    """A data set of ../shared/data (never copied into the project); the test is skipped where it is absent."""
    path = SHARED_DATA / folder
    if not (path / f"{folder}.inter").exists():
        pytest.skip(f"{name} not found at {path}")
    return path


@pytest.fixture(scope="session")
def ml100k_dir():
    return shared_data("ml-100k", "MovieLens-100K")


@pytest.fixture(scope="session")
def beauty_dir():
    return shared_data("amazon-beauty", "Amazon Beauty")
