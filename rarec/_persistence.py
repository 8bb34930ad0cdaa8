"""Saving and loading a fitted RARecommender: JSON and safetensors, never pickle.

A model folder holds three files:

- ``config.json``: format version, library versions, estimator parameters,
  the LLM's identity, the alignment module's shape, the CF backbone's
  configuration, the user and item id maps, fitted summaries, and the
  SHA-256 digests of the two other files;
- ``model.safetensors``: CF weights, alignment module, cached user and item
  vectors, and the items each known user has seen;
- ``item_text.json``: the item titles and categories the prompts are made of.

Loading reads only data (JSON and raw tensors), so a damaged or hostile
folder can fail to load but cannot run code. The folder is written to a
temporary sibling and renamed into place, so a crash mid-save never leaves
a half-written model under the target name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch
from safetensors.torch import load_file, save_file

from ._errors import ModelFormatError
from ._json import json_default
from ._version import __version__
from ._params import llm_source, prompt_settings, validate_params
from ._save_lock import exclusive_save
from .align import Towers
from .cf import CFBackbone
from .data import IdIndex

if TYPE_CHECKING:
    from ._estimator import RARecommender

FORMAT = "rarec-recommender"
#: Bumped whenever a file's layout changes; a reader refuses folders from a newer format.
#: 2: ``llm_spec`` describes the whole LLM and each tower's config holds its prefix ``depth``
#: (format 1 wrote the prefix depth into ``llm_spec.n_layers``); 3: the aligner may hold output heads
#: (``aligner.output_heads`` in the config, their weights under ``aligner.heads.*``); 4: the heads may end in a
#: residual MLP (``aligner.output_head_hidden``, its weights under ``aligner.heads.{user,item}_mlp.*``); 5: the user
#: head may pool the history's item vectors (``aligner.output_head_pool``, ``aligner.heads.user_pool.weight``, and
#: the catalogue's outputs before the heads as ``item_basis``); 6: the ID vectors may end in EASE factors
#: (``cooccurrence.history_side`` and ``cooccurrence.item_side``); 7: and then in TF-IDF factors of the item texts
#: (``text_factors.components`` and ``text_factors.scale``); 8: the prefix projectors may scale their input columns
#: (``aligner.{user,item}_prefix.input_scale``, ``balance_id_blocks``; a file without them is
#: written as format 7, which older readers load); 9: a tower's config may hold ``pooling`` (the research setting
#: of mean-pooled LLM vectors; absent: the last token's, and the file is written as format 8 or 7); 10: a tower's
#: config may hold ``id_blocks`` (the research setting of one ID token per block of the ID vector; absent: none, and
#: the file is written as an older format). All are read.
FORMAT_VERSION = 10
#: What a file whose towers name their pooling but no ID blocks is written as.
POOLED_FORMAT_VERSION = 9
#: What a file with input scales but no tower that mean-pools is written as.
SCALED_FORMAT_VERSION = 8
#: What a file without format 8's input scales (a fit without ``balance_id_blocks``) is written as.
UNSCALED_FORMAT_VERSION = 7
CONFIG_FILE, WEIGHTS_FILE, TEXT_FILE = "config.json", "model.safetensors", "item_text.json"


def _format_version(tensors: dict[str, torch.Tensor], towers_config: dict) -> int:
    """The oldest format that holds what is written: 10 when a tower's config holds ID blocks, 9 when one names its
    pooling, 8 with the projectors' input scales, 7 otherwise."""
    towers = [towers_config["aligner"][tower] for tower in ("user", "item")]
    if any("id_blocks" in tower for tower in towers):
        return FORMAT_VERSION
    if any("pooling" in tower for tower in towers):
        return POOLED_FORMAT_VERSION
    return SCALED_FORMAT_VERSION if any(k.endswith("input_scale") for k in tensors) else UNSCALED_FORMAT_VERSION


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    import transformers

    return {"rarec": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


# ----------------------------------------------------------------- parameters
def _encode_params(params: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """JSON-safe parameters; arrays inside ``backbone_params`` go to ``tensors``."""
    out = dict(params)
    if isinstance(out["backbone"], CFBackbone):  # a backbone fitted outside: saved as backbone_, named here
        out["backbone"] = out["backbone"].name
    if not (out["llm"] is None or isinstance(out["llm"], str | os.PathLike)):
        out["llm"] = None  # an in-memory (model, tokenizer) pair: its identity is recorded under "llm"
    elif out["llm"] is not None:
        out["llm"] = str(out["llm"])
    if out.get("backbone_params"):
        encoded = {}
        for key, value in out["backbone_params"].items():
            if isinstance(value, np.ndarray | torch.Tensor):
                name = f"params.backbone_params.{key}"
                tensors[name] = torch.as_tensor(np.asarray(value)).clone().contiguous()
                encoded[key] = {"tensor": name}
            elif isinstance(value, os.PathLike):
                encoded[key] = str(value)
            else:
                encoded[key] = value
        out["backbone_params"] = encoded
    return out


#: Parameters of older rarec versions that were removed, with the value that means "off".
REMOVED_PARAMS = {"output_head": False, "cf_residual": 0.0}
#: Parameters added since, with the value that describes what a model saved before them computed.
ADDED_PARAMS = {"cooccurrence_teacher": 0.0, "history_pooling": False, "cooccurrence_factors": 0}


def _decode_params(params: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    out = dict(params)
    for name, off in REMOVED_PARAMS.items():  # a model that used one cannot be served by this rarec
        if out.pop(name, off) != off:
            raise ModelFormatError(f"this model was fitted with {name}={params[name]!r}, an option since removed "
                                   "from rarec (it did not rank better); load it with the rarec version that "
                                   "wrote it (config.json names it under 'versions').")
    for name, before in ADDED_PARAMS.items():
        out.setdefault(name, before)
    if out.get("backbone_params"):
        out["backbone_params"] = {
            key: tensors[value["tensor"]].numpy() if isinstance(value, dict) and "tensor" in value else value
            for key, value in out["backbone_params"].items()
        }
    return out


# ----------------------------------------------------------------------- save
def save_recommender(rec: RARecommender, path: str | os.PathLike) -> Path:
    """Write ``rec`` (fitted) into the folder ``path``; see the module docstring for the layout."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ModelFormatError(f"cannot save a model to {path}: it is a file, not a folder.")
    if path.is_dir() and any(path.iterdir()) and not (path / CONFIG_FILE).exists():
        raise ModelFormatError(f"{path} is a non-empty folder that holds no rarec model; refusing to overwrite it.")
    tensors: dict[str, torch.Tensor] = {}
    params = _encode_params(rec.get_params(deep=False), tensors)
    cf_meta, cf_tensors = rec.backbone_.to_state()
    tensors.update({f"backbone.{k}": v for k, v in cf_tensors.items()})
    towers_config, towers_tensors, texts = rec.towers_.to_state()
    tensors.update(towers_tensors)
    tensors["item_vectors"] = rec.item_vectors_.contiguous()
    tensors["user_vectors"] = rec.user_vectors_.contiguous()
    seen = rec.seen_.tocsr()
    tensors["seen.indptr"] = torch.from_numpy(seen.indptr.astype(np.int64))
    tensors["seen.indices"] = torch.from_numpy(seen.indices.astype(np.int64))

    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_save(path) as token:
        _write_folder(rec, path, tensors, params, cf_meta, towers_config, texts, token)
    return path


def _write_folder(rec: RARecommender, path: Path, tensors: dict[str, torch.Tensor], params: dict, cf_meta: dict,
                  towers_config: dict, texts: list, token: str) -> None:
    """Write the three files into a temporary sibling, then swap it in for ``path`` (the save lock held)."""
    tmp = path.parent / f".{path.name}.partial-{token}"
    tmp.mkdir()
    try:
        save_file(tensors, str(tmp / WEIGHTS_FILE))
        (tmp / TEXT_FILE).write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        config = {
            "format": FORMAT,
            "format_version": _format_version(tensors, towers_config),
            "versions": _versions(),
            "params": params,
            **towers_config,  # "llm" (identity), "llm_spec", "aligner"
            "backbone": cf_meta,
            "users": {"type": rec.users_.dtype_name, "ids": rec.users_.to_list()},
            "items": {"type": rec.items_.dtype_name, "ids": rec.items_.to_list()},
            "fitted": {
                "training_log": rec.training_log_,
                "selection_report": rec.selection_report_,
                "n_trainable_parameters": rec.n_trainable_parameters_,
                "n_llm_parameters": rec.n_llm_parameters_,
                "fit_seconds": rec.fit_seconds_,
                "score_fusion": rec.score_fusion_,
                "seed": rec.seed_,
            },
            "sha256": {WEIGHTS_FILE: _sha256(tmp / WEIGHTS_FILE), TEXT_FILE: _sha256(tmp / TEXT_FILE)},
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True, default=json_default),
                                       encoding="utf-8")
        old = path.parent / f".{path.name}.old-{token}"
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------- load
def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``config.json`` of a model folder, after checking format and version."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFormatError(f"{path} is not a folder; a rarec model is a folder written by RARecommender.save().")
    if not (path / CONFIG_FILE).exists():
        raise ModelFormatError(f"{path} holds no {CONFIG_FILE}: it is not a rarec model folder.")
    try:
        config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{path / CONFIG_FILE} is not valid JSON ({exc}); the file is damaged.") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelFormatError(f"{path / CONFIG_FILE} is not a rarec model configuration.")
    version = config.get("format_version")
    if not isinstance(version, int):
        raise ModelFormatError(f"{path / CONFIG_FILE} has no valid format_version.")
    if version > FORMAT_VERSION:
        written_by = config.get("versions", {}).get("rarec", "a newer version")
        raise ModelFormatError(
            f"{path} was saved by rarec {written_by} (model format {version}); this rarec ({__version__}) reads "
            f"format {FORMAT_VERSION} and older. Upgrade rarec to load it."
        )
    return config


def _check_digest(path: Path, name: str, config: dict[str, Any]) -> None:
    file = path / name
    if not file.exists():
        raise ModelFormatError(f"{path} holds no {name}; the model folder is incomplete.")
    expected = config.get("sha256", {}).get(name)
    if expected != _sha256(file):
        raise ModelFormatError(f"{file} does not match the digest in {CONFIG_FILE}: it is damaged, truncated "
                               "or was changed after saving.")


def load_recommender(cls: type[RARecommender], path: str | os.PathLike, llm: Any = None,
                     device: str | None = None) -> RARecommender:
    """Rebuild a fitted recommender from a folder written by :func:`save_recommender`."""
    path = Path(path)
    config = read_config(path)
    for name in (WEIGHTS_FILE, TEXT_FILE):
        _check_digest(path, name, config)
    try:
        tensors = load_file(str(path / WEIGHTS_FILE))
        _check_tensors(tensors, path / WEIGHTS_FILE)
        texts = json.loads((path / TEXT_FILE).read_text(encoding="utf-8"))
        params = _decode_params(config["params"], tensors)
        if llm is not None:
            params["llm"] = llm
        if device is not None:
            params["device"] = device
        rec = cls(**params)
        validate_params(rec)
        users = IdIndex(_typed_ids(config["users"]), kind="user")
        items = IdIndex(_typed_ids(config["items"]), kind="item")
        fitted = config["fitted"]
    except ModelFormatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFormatError(f"{path / CONFIG_FILE} is incomplete or holds invalid values "
                               f"({type(exc).__name__}: {exc}).") from None
    except Exception as exc:  # safetensors' own error type for a malformed file
        raise ModelFormatError(f"{path / WEIGHTS_FILE} could not be read ({exc}).") from None

    from ._device import resolve_device

    target = resolve_device(rec.device)
    cf_tensors = {k.removeprefix("backbone."): v for k, v in tensors.items() if k.startswith("backbone.")}
    try:
        backbone = CFBackbone.from_state(config["backbone"], cf_tensors, str(target), source=str(path / CONFIG_FILE))
    except ValueError as exc:
        raise ModelFormatError(str(exc)) from None
    try:
        towers = Towers.from_state(config, tensors, texts, backbone, prompt_settings(rec), llm_source(rec, target))
    except ModelFormatError as exc:
        raise ModelFormatError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFormatError(f"{path / CONFIG_FILE} is incomplete or holds invalid values "
                               f"({type(exc).__name__}: {exc}).") from None
    spec = towers.aligner.user_prefix.spec
    n_users, n_items = len(users), len(items)
    item_vectors, user_vectors = tensors["item_vectors"], tensors["user_vectors"]
    if item_vectors.shape != (n_items, spec.hidden_size) or user_vectors.shape != (n_users, spec.hidden_size):
        raise ModelFormatError(f"{path / WEIGHTS_FILE}: cached vectors of shape {tuple(user_vectors.shape)} and "
                               f"{tuple(item_vectors.shape)} do not fit {n_users} users, {n_items} items and "
                               f"hidden size {spec.hidden_size}.")
    cf_user_vectors = tensors.get("cf_user_vectors")  # absent in folders written by rarec 0.2.0
    expected = (n_users, backbone.n_interests, towers.item_cf.shape[2])
    if cf_user_vectors is not None and tuple(cf_user_vectors.shape) != expected:
        raise ModelFormatError(f"{path / WEIGHTS_FILE}: CF user vectors of shape {tuple(cf_user_vectors.shape)} do not "
                               f"fit {expected}.")
    if cf_user_vectors is None and float(fitted.get("score_fusion", 0.0)):
        raise ModelFormatError(f"{path / WEIGHTS_FILE} has no CF user vectors, which score_fusion needs.")
    if len(texts) != n_items:
        raise ModelFormatError(f"{path / TEXT_FILE} holds {len(texts)} item texts for {n_items} items.")
    indptr, indices = tensors["seen.indptr"].numpy(), tensors["seen.indices"].numpy()
    if len(indptr) != n_users + 1 or (len(indices) and (indices.min() < 0 or indices.max() >= n_items)):
        raise ModelFormatError(f"{path / WEIGHTS_FILE}: the seen-items table does not fit the id maps.")

    seen = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(n_users, n_items))
    if cf_user_vectors is not None:
        towers.set_user_table(cf_user_vectors, seen.getnnz(axis=1) > 0)
    rec.backbone_, rec.towers_ = backbone, towers
    rec.users_, rec.items_ = users, items
    rec.n_users_, rec.n_items_ = n_users, n_items
    rec.item_vectors_, rec.user_vectors_ = item_vectors, user_vectors
    rec.seen_ = seen
    rec.training_log_ = fitted.get("training_log", [])
    rec.selection_report_ = fitted.get("selection_report", {})
    rec.n_trainable_parameters_ = int(fitted.get("n_trainable_parameters", towers.aligner.n_parameters))
    rec.n_llm_parameters_ = int(fitted.get("n_llm_parameters", 0))
    rec.fit_seconds_ = float(fitted.get("fit_seconds", 0.0))
    rec.score_fusion_ = float(fitted.get("score_fusion", 0.0))
    rec.seed_ = fitted.get("seed")
    rec._ivf = None
    return rec


#: Tensors a model file holds: exact names with their dtype, and name prefixes with the kind of dtype allowed.
_TENSORS = {"item_vectors": torch.float32, "user_vectors": torch.float32, "cf_user_vectors": torch.float32,
            "item_basis": torch.float32, "cooccurrence.history_side": torch.float32,
            "cooccurrence.item_side": torch.float32, "text_factors.components": torch.float32,
            "text_factors.scale": torch.float32,
            "seen.indptr": torch.int64, "seen.indices": torch.int64}
_PREFIXES = {"aligner.": "float", "backbone.": "any", "params.backbone_params.": "any"}


def _check_tensors(tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Refuse, before any use, tensors a rarec model does not write or of a dtype it never writes."""
    for name, tensor in tensors.items():
        if name in _TENSORS:
            if tensor.dtype != _TENSORS[name]:
                raise ModelFormatError(f"{source}: tensor {name!r} is {tensor.dtype}, expected {_TENSORS[name]}.")
            continue
        prefix = next((p for p in _PREFIXES if name.startswith(p)), None)
        if prefix is None:
            raise ModelFormatError(f"{source} holds a tensor {name!r} that no rarec model has; it was not written "
                                   "by rarec.save.")
        if _PREFIXES[prefix] == "float" and not tensor.dtype.is_floating_point:
            raise ModelFormatError(f"{source}: tensor {name!r} is {tensor.dtype}, expected a floating-point type.")
    missing = [name for name in ("item_vectors", "user_vectors", "seen.indptr", "seen.indices") if name not in tensors]
    if missing:
        raise ModelFormatError(f"{source} lacks the tensor(s) {', '.join(missing)}; the model folder is incomplete.")


def _typed_ids(section: dict[str, Any]) -> list:
    ids = section["ids"]
    kind = section["type"]
    if kind not in ("int", "str") or not isinstance(ids, list):
        raise ValueError(f"id map of type {kind!r} is not valid")
    return [int(v) for v in ids] if kind == "int" else [str(v) for v in ids]
