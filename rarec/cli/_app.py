"""The ``rarec`` command line."""

from __future__ import annotations

import platform
import sys

import click

from .._version import __version__


def _versions() -> dict[str, str]:
    import numpy
    import scipy
    import sklearn
    import torch
    import transformers

    return {
        "rarec": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
    }


def format_table(rows: list[dict[str, object]], columns: list[str]) -> str:
    """A plain-text table with right-aligned numbers (4 decimals)."""
    cells = [[f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[j]) for row in cells)) for j, c in enumerate(columns)]
    line = lambda values: "  ".join(v.rjust(w) if j else v.ljust(w) for j, (v, w) in enumerate(zip(values, widths)))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(row) for row in cells)])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rarec")
def main() -> None:
    """rarec: LLM-based recommendation by ID representation alignment (RA-Rec).

    \b
    Examples:
      rarec demo              # the built-in synthetic catalogue, end to end
      rarec info              # versions and the device rarec would use
    """


@main.command()
def info() -> None:
    """Print the versions of rarec and its main dependencies, and the device.

    \b
    Example:
      rarec info
    """
    from .._device import resolve_device

    for name, version in _versions().items():
        click.echo(f"{name:<13} {version}")
    import torch

    device = resolve_device("auto")
    detail = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    click.echo(f"{'device':<13} {device.type} ({detail})")
    click.echo(f"{'cpu threads':<13} {torch.get_num_threads()}")


#: Demo settings: small models that learn the synthetic catalogue in seconds.
DEMO_BACKBONES = {
    "sasrec": dict(dim=32, n_layers=1, n_heads=2, inner_dim=64, dropout=0.2, max_len=25),
    "comirec": dict(dim=32, n_interests=3, max_len=25, n_negatives=64),
    "bpr": dict(dim=32),
}
DEMO_TRAINING = {
    "sasrec": dict(batch_size=64, lr=5e-3, patience=5),
    "comirec": dict(batch_size=256, lr=5e-3, patience=5),
    "bpr": dict(batch_size=512, lr=1e-2, patience=10),
}


@main.command()
@click.option("--users", "n_users", default=500, show_default=True, type=click.IntRange(2), help="Users in the synthetic log.")
@click.option("--items", "n_items", default=200, show_default=True, type=click.IntRange(12), help="Items in the catalogue.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed for the data and the models.")
@click.option("--backbones", default="sasrec,comirec,bpr", show_default=True,
              help="Comma-separated CF backbones to fit beside popularity (empty for none).")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(1), help="Most epochs per backbone.")
@click.option("-k", "ks", multiple=True, type=click.IntRange(1), default=(10, 20, 100), show_default=True,
              help="Cut-offs K (repeat the option for several).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the results table.")
def demo(n_users: int, n_items: int, seed: int, backbones: str, epochs: int, ks: tuple[int, ...], device: str,
         quiet: bool) -> None:
    """Run the pipeline on the built-in synthetic catalogue and print metrics.

    Generates a log with planted structure (categories in the titles,
    sequential patterns), holds out each user's last interaction for test and
    the one before for validation, fits popularity and the CF backbones
    (early-stopped on validation NDCG@10) and ranks the full catalogue.

    \b
    Examples:
      rarec demo
      rarec demo --users 1000 --items 300 --backbones sasrec -k 10 -k 50
    """
    from ..cf import PopularityRecommender, TrainingConfig, make_backbone
    from ..data import make_interactions
    from ..metrics import full_ranking_metrics
    from ..model_selection import leave_last_out

    names = [b.strip() for b in backbones.split(",") if b.strip()]
    unknown = sorted(set(names) - set(DEMO_BACKBONES))
    if unknown:
        raise click.BadParameter(f"unknown backbone(s) {unknown}; choose from {sorted(DEMO_BACKBONES)}.",
                                 param_hint="--backbones")
    say = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))  # noqa: E731
    log, text = make_interactions(n_users=n_users, n_items=n_items, random_state=seed)
    say(f"synthetic catalogue: {log.n_users} users, {log.n_items} items, {len(log)} interactions, "
        f"{len(text)} item titles (e.g. {text[0].render()!r})")
    split = leave_last_out(log)
    say(f"leave-last-out split: {len(split.train)} train, {len(split.valid)} validation, "
        f"{len(split.test)} test interactions")
    metrics = ("hr", "ndcg", "mrr")
    rows = []
    # Validation ranks against the training history; test against train + validation.
    for part, seen, held_out in (("valid", split.train, split.valid), ("test", split.before_test, split.test)):
        model = PopularityRecommender().fit(seen)
        rows.append({"model": "popularity", "split": part,
                     **full_ranking_metrics(model.score_users, held_out, seen, ks=ks, metrics=metrics)})
    for name in names:
        training = TrainingConfig(epochs=epochs, random_state=seed, device=device, verbose=not quiet,
                                  **DEMO_TRAINING[name])
        backbone = make_backbone(name, training, **DEMO_BACKBONES[name]).fit(split.train, split.valid)
        say(f"{name}: {len(backbone.training_log_)} epochs")
        for part, seen, held_out in (("valid", split.train, split.valid), ("test", split.before_test, split.test)):
            scores = full_ranking_metrics(backbone.scorer(seen), held_out, seen, ks=ks, metrics=metrics)
            rows.append({"model": name, "split": part, **scores})
    columns = ["model", "split", *[f"{m}@{k}" for k in sorted(set(ks)) for m in metrics]]
    click.echo(format_table(rows, columns))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
