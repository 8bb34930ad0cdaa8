"""Saving into one folder from several threads or processes: one save at a time, nothing left behind."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import rarec._save_lock as save_lock
from rarec import RARecommender, SaveInProgressError

from .test_persistence import data, fitted, llm  # noqa: F401  (module fixtures)


def dead_pid():
    """The pid of a process that has already exited."""
    return subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()


def leftovers(folder):
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def test_overlapping_saves_all_succeed_one_after_the_other(fitted, tmp_path):
    target = tmp_path / "model"
    errors = []

    def save_many():
        for _ in range(5):
            try:
                fitted.save(target)
            except Exception as exc:  # noqa: BLE001 - any failure is what the test looks for
                errors.append(exc)

    threads = [threading.Thread(target=save_many) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert leftovers(target) == []
    users = fitted.users_.ids[:3]
    np.testing.assert_array_equal(RARecommender.load(target).predict(users), fitted.predict(users))


def test_a_save_held_by_a_live_process_is_refused_with_a_clear_error(fitted, tmp_path, monkeypatch,
                                                                      hold_save_lock):
    target = tmp_path / "model"
    lock = hold_save_lock(target)
    monkeypatch.setattr(save_lock, "WAIT_SECONDS", 0.2)
    with pytest.raises(SaveInProgressError, match=r"another save into .*model is in progress \(process \d+"):
        fitted.save(target)
    assert lock.exists()  # not ours to remove
    assert not target.exists()


def test_saves_waiting_on_a_dead_process_lock_never_overlap(tmp_path, monkeypatch):
    # Many waiters and a lock file left by a dead process: each takes the lock in turn, never two at once (the
    # takeover of a stale lock file used to let a second waiter remove the first one's fresh lock). A slow
    # liveness check (as on a loaded machine) widens the window in which that could happen.
    real_stale = save_lock._stale
    monkeypatch.setattr(save_lock, "_stale", lambda *args: threading.Event().wait(0.01) or real_stale(*args))
    dead = dead_pid()
    target = tmp_path / "model"
    inside, most, errors = [0], [0], []
    guard = threading.Lock()

    def save_once(start):
        start.wait()
        try:
            with save_lock.exclusive_save(target, wait_seconds=60):
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                threading.Event().wait(0.002)
                with guard:
                    inside[0] -= 1
        except Exception as exc:  # noqa: BLE001 - any failure is what the test looks for
            errors.append(exc)

    for _ in range(20):
        (tmp_path / ".model.lock").write_text(f"{dead} {save_lock.socket.gethostname()}\n")
        start = threading.Barrier(6)
        threads = [threading.Thread(target=save_once, args=(start,)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == [] and most[0] == 1
    assert leftovers(target) == []


@pytest.mark.parametrize("kernel_lock", [True, False], ids=["flock", "lock-file"])
def test_a_lock_left_by_a_dead_process_and_crashed_saves_are_cleaned_up(fitted, tmp_path, monkeypatch, kernel_lock):
    if not kernel_lock:  # the scheme of systems without flock: the lock file's existence, stale when its pid is gone
        monkeypatch.setattr(save_lock, "fcntl", None)
    elif save_lock.fcntl is None:
        pytest.skip("this system has no flock")
    target = tmp_path / "model"
    fitted.save(target)
    dead = dead_pid()
    (tmp_path / ".model.lock").write_text(f"{dead} {save_lock.socket.gethostname()}\n")
    for name in (f".model.old-{dead}", f".model.partial-{dead}"):  # what a killed save leaves
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"half")
    fitted.save(target)
    assert leftovers(target) == []
    fitted.save(target)  # and the next save is not blocked either
    assert RARecommender.load(target).n_items_ == fitted.n_items_


def test_a_save_killed_between_its_two_renames_gets_the_previous_model_back(fitted, tmp_path, monkeypatch):
    import rarec._persistence as persistence

    target = tmp_path / "model"
    fitted.save(target)
    before = (target / "model.safetensors").read_bytes()
    renames = []
    real_replace = os.replace

    def crash_on_second(src, dst):  # the first rename moves the old model aside, the second never happens
        renames.append((src, dst))
        if len(renames) == 2:
            raise OSError("killed")
        real_replace(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(persistence.os, "replace", crash_on_second)
        with pytest.raises(OSError, match="killed"):
            fitted.save(target)
    assert not target.exists() and leftovers(target)  # only the hidden old copy is left
    with monkeypatch.context() as patch:  # the next save fails early, after the lock has put the old model back
        patch.setattr(persistence, "save_file", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
        with pytest.raises(OSError, match="disk full"):
            fitted.save(target)
    assert (target / "model.safetensors").read_bytes() == before
    assert leftovers(target) == []
