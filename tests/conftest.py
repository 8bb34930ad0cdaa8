import os
import socket
from pathlib import Path

import pytest

import rarec._save_lock as save_lock

from rarec.data import make_interactions

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def synthetic():
    """A small synthetic catalogue with planted structure (same every run)."""
    return make_interactions(n_users=200, n_items=80, n_categories=4, random_state=7)


@pytest.fixture
def hold_save_lock():
    """``hold(folder)``: hold the save lock of a model folder as a save running in another live process would."""
    handles = []

    def hold(folder: Path):
        lock = folder.parent / f".{folder.name}.lock"
        lock.write_text(f"{os.getpid()} {socket.gethostname()}\n")  # the holder it names: this process, alive
        handle = open(lock)  # noqa: SIM115 - closed when the test ends
        if save_lock.fcntl is not None:  # where the lock is the kernel's, holding it is what makes saves wait
            save_lock.fcntl.flock(handle, save_lock.fcntl.LOCK_EX)
        handles.append(handle)
        return lock

    yield hold
    for handle in handles:
        handle.close()


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
