"""What the benchmark scripts share: the CF training settings, the results' JSON layout and the docs-section writer.

Each script in ``benchmarks/`` is run from the repository root
(``python benchmarks/NAME.py``), so this module is imported as ``common``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from pathlib import Path

# Training settings per backbone (RecBole's defaults where they exist; see docs/benchmarks.md).
SETTINGS = {
    "bpr": (dict(dim=64), dict(batch_size=2048, lr=1e-3, patience=30, epochs=500)),
    "sasrec": (dict(dim=64, n_layers=2, n_heads=2, inner_dim=256, dropout=0.5, max_len=50),
               dict(batch_size=128, lr=1e-3, patience=20, epochs=500)),
    # Full softmax and lr 1e-2: chosen on validation NDCG@10 over the runs listed in docs/benchmarks.md.
    "comirec": (dict(dim=64, n_interests=4, max_len=50, n_negatives=None),
                dict(batch_size=256, lr=1e-2, patience=20, epochs=500)),
}


#: Short names of the shared data sets (folder name -> name in headings).
DATASET_TITLES = {"ml-100k": "ML-100K", "amazon-beauty": "Amazon Beauty"}


def resumed_mark(rows: list[dict]) -> str:
    """What a wall-time cell adds when any of its rows' fits resumed from a checkpoint (their seconds count only
    the resumed run)."""
    return " (resumed)" if any(r.get("resumed") for r in rows) else ""


def resumed_note(rows: list[dict]) -> str:
    """What a table's heading adds when any of its ``rows`` is marked by :func:`resumed_mark`."""
    return (" A wall time marked \"resumed\" counts only the run that finished the fit from a checkpoint, not the "
            "earlier run(s) that wrote it.") if resumed_mark(rows) else ""


@contextlib.contextmanager
def _replaced_fields(builder: str, fields: dict):
    """While open, ``rarec._params.<builder>`` (a function that builds a stage's settings dataclass) gives its
    settings with ``fields`` replaced."""
    from rarec import _params

    original = getattr(_params, builder)
    setattr(_params, builder, lambda *args, **kwargs: dataclasses.replace(original(*args, **kwargs), **fields))
    try:
        yield
    finally:
        setattr(_params, builder, original)


def alignment_overrides(**fields):
    """While open, RARecommender trains its alignment module with these ``AlignmentConfig`` fields replaced:
    research options that are not estimator parameters (``id_dropout``). Those that became parameters in session 56
    (``balance_id_blocks``, ``random_negative_gradients``, the text and co-occurrence factors' settings) are given
    to the estimator instead: the same settings and checkpoint fingerprints as the overrides the earlier rows used."""
    return _replaced_fields("alignment_config", fields)


def prefix_overrides(**fields):
    """While open, RARecommender builds both towers' prefixes with these ``PrefixConfig`` fields replaced (the
    LLM vectors' ``pooling``): research settings that are not estimator parameters. They are saved with the model."""
    return _replaced_fields("prefix_config", fields)


@contextlib.contextmanager
def continued_from(shorter: Path | None, folder: Path | None):
    """While open, the fit checkpointed in ``folder`` starts where the finished fit checkpointed in ``shorter`` ended:
    the same parameters, seed and data but fewer ``epochs``. The alignment learning rate is constant, so the state
    a fit saves after its last epoch (weights, Adam moments, the random state of the sample draw, the best
    validation so far) is what a longer fit saves after that epoch, except the flag that says it is done: a copy of
    that checkpoint (and of the fitted backbone), restamped with the longer fit's fingerprint and that flag cleared,
    resumes into exactly the longer fit's next epoch (tests/test_benchmark_protocols.py checks it on a tiny LLM).
    The fit must run with ``resume=True``; the shorter fit's heads and item vectors are not copied. Nothing changes
    when either folder is None."""
    if shorter is None or folder is None:
        yield
        return
    from rarec._fit_checkpoint import FitCheckpointer

    step = json.loads((shorter / "latest.json").read_text())["checkpoint"]
    if not step.endswith("-epoch"):
        raise ValueError(f"{shorter} holds a fit stopped inside an epoch ({step}): resume it first")
    stamp = json.loads((shorter / step / "state.json").read_text())["fingerprint"]
    if not folder.exists():
        folder.mkdir(parents=True)
        for name in ("backbone", step, "latest.json"):
            (shutil.copytree if (shorter / name).is_dir() else shutil.copy2)(shorter / name, folder / name)
    begin = FitCheckpointer.begin

    def restamped(self, resume):
        if resume and Path(self.directory).resolve() == folder.resolve():
            for path, extra in ((folder / step / "state.json", {"done": False}),
                                (folder / "backbone" / "cf" / "state.json", {})):
                state = json.loads(path.read_text())
                if state.get("fingerprint") == stamp:  # not yet restamped (a stopped continuation is resumed as is)
                    path.write_text(json.dumps(dict(state, fingerprint=self.stamp, **extra), indent=1))
        return begin(self, resume)

    FitCheckpointer.begin = restamped
    try:
        yield
    finally:
        FitCheckpointer.begin = begin


@contextlib.contextmanager
def cached_prompt_states(folder: Path | None):
    """While open, the alignment trainer's once-per-fit pass of the frozen LLM over every prompt (the lower-layer
    states and the text keys/values, ``_trainer._prepare_prompts``) is read from ``folder`` when a fit with the
    same LLM weights, prompt tokens, layers and memory budget wrote it there before, and written there otherwise.
    The pass uses no randomness and nothing trained, so a fit computes exactly what it would without the cache;
    a benchmark's later seeds (the same catalogue) and a rerun of a stopped row (the same samples) skip it. On
    Amazon Beauty's catalogue that is about 24 minutes of a 2-core CPU; each entry holds up to a few GB.
    ``folder=None``: no cache."""
    import hashlib

    import torch

    from rarec.align import _trainer

    if folder is None:
        yield
        return
    original = _trainer._prepare_prompts

    def prepare(towers, tower, tokens, start, budget, keys_values, progress):
        key = json.dumps([towers.llm.identity.get("weights_sha256"), towers.llm.identity.get("config_sha256"),
                          str(towers.llm.dtype), tower, start, towers.aligner.tower(tower).config.length, budget,
                          bool(keys_values), [list(map(int, t)) for t in tokens]])
        path = Path(folder) / f"{tower}_{hashlib.sha256(key.encode()).hexdigest()[:24]}.pt"
        if path.exists():
            return tuple(torch.load(path))
        found = original(towers, tower, tokens, start, budget, keys_values, progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(list(found), path.with_suffix(".part"))
        path.with_suffix(".part").rename(path)  # a stopped write leaves no entry behind
        return found

    _trainer._prepare_prompts = prepare
    try:
        yield
    finally:
        _trainer._prepare_prompts = original


def dataset_suffix(data: Path) -> str:
    """"" for ML-100K (the first data set, whose results files keep their names), else "_" + the folder's name."""
    return "" if data.name == "ml-100k" else "_" + data.name


def read_dataset(data: Path):
    """The 5-core log and item texts of a shared data set; Amazon's category paths stay whole (names hold spaces)."""
    from rarec.data import read_recbole

    return read_recbole(data, categories_sep="" if data.name.startswith("amazon") else None).k_core(5)


def write_section(path: Path, section: str, marker: str = "cf-quality") -> None:
    begin, end = f"<!-- begin {marker} -->", f"<!-- end {marker} -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nEvery table here is written by a script in `benchmarks/`.\n"
    block = f"{begin}\n{section}{end}\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def results_json(result) -> str:
    """``result`` as indented JSON, except that a list of plain values (per-user metrics, say) stays on one line,
    so that results files stay short and their diffs readable."""
    def encode(value, depth: int) -> str:
        pad, inner = " " * depth, " " * (depth + 1)
        if isinstance(value, dict) and value:
            return "{\n" + ",\n".join(f"{inner}{json.dumps(str(k))}: {encode(v, depth + 1)}" for k, v in value.items()) \
                + f"\n{pad}}}"
        if isinstance(value, list | tuple) and any(isinstance(v, dict | list | tuple) for v in value):
            return "[\n" + ",\n".join(inner + encode(v, depth + 1) for v in value) + f"\n{pad}]"
        return json.dumps(value, default=str)

    return encode(result, 0) + "\n"
