"""Checkpoints of a fit in progress, so that an interrupted alignment training resumes where it stopped.

A checkpoint folder holds one subfolder per checkpoint (``step-000120/``:
``state.json`` + ``tensors.safetensors``, no pickle) and ``latest.json``, which
names the newest complete one. A checkpoint is written in full into a
temporary folder, renamed into place, and only then named in ``latest.json``
(itself replaced atomically); the previous one is deleted last. A crash at
any moment therefore leaves ``latest.json`` naming a complete checkpoint.

What a checkpoint holds is chosen by its writer (:mod:`rarec._fit_checkpoint`):
the alignment trainer's state, the fitted CF backbone, or the item vectors
encoded so far; each with a fingerprint of the parameters and data, checked
before resuming.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ._errors import ModelFormatError
from ._json import json_default

LATEST = "latest.json"
STATE_FILE = "state.json"
TENSORS_FILE = "tensors.safetensors"
FORMAT_VERSION = 1


def write_checkpoint(directory: str | os.PathLike, name: str, state: dict[str, Any],
                     tensors: dict[str, torch.Tensor]) -> Path:
    """Write checkpoint ``name`` under ``directory`` atomically and make it the latest; returns its folder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    previous = latest_name(directory)
    tmp = directory / f".{name}.partial-{os.getpid()}"
    pointer = directory / f".{LATEST}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / TENSORS_FILE))
        _write_json(tmp / STATE_FILE, {"format_version": FORMAT_VERSION, **state})
        final = directory / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _write_json(pointer, {"checkpoint": name})
        os.replace(pointer, directory / LATEST)
    finally:  # a failed write leaves no temporary files behind
        shutil.rmtree(tmp, ignore_errors=True)
        pointer.unlink(missing_ok=True)
    if previous is not None and previous != name:
        shutil.rmtree(directory / previous, ignore_errors=True)
    return final


def read_checkpoint(directory: str | os.PathLike,
                    tensors: bool = True) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """``(state, tensors)`` of the latest complete checkpoint in ``directory``, or ``None`` when there is none.

    ``tensors=False`` reads the state alone (the tensors come back empty).
    """
    directory = Path(directory)
    name = latest_name(directory)
    if name is None:
        return None
    folder = directory / name
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        arrays = load_file(str(folder / TENSORS_FILE)) if tensors else {}
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"the checkpoint {folder} cannot be read ({exc}); delete {directory} to start "
                               "afresh.") from None
    except Exception as exc:  # safetensors' own error type for a damaged file
        raise ModelFormatError(f"the checkpoint {folder} is damaged ({exc}); delete {directory} to start "
                               "afresh.") from None
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFormatError(f"the checkpoint {folder} was written by a newer rarec; upgrade rarec or delete it.")
    return state, arrays


def latest_name(directory: Path) -> str | None:
    try:
        name = json.loads((directory / LATEST).read_text(encoding="utf-8"))["checkpoint"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFormatError(f"{directory / LATEST} cannot be read ({exc}); delete {directory} to start "
                               "afresh.") from None
    if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
        raise ModelFormatError(f"{directory / LATEST} names an invalid checkpoint {name!r}.")
    return name


def _write_json(path: Path, value: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, default=json_default)
        f.flush()
        os.fsync(f.fileno())


# ------------------------------------------------------------ state pieces
def fingerprint(params: dict[str, Any], arrays: list[np.ndarray]) -> str:
    """A digest of what must not change between an interrupted fit and its resumption."""
    digest = hashlib.sha256()
    digest.update(json.dumps(params, sort_keys=True, default=repr).encode())
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]
