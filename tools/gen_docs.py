"""Write docs/api.md (from the docstrings) and docs/cli.md (from the commands' --help).

    python tools/gen_docs.py           # rewrite both files
    python tools/gen_docs.py --check   # exit 1 if either is out of date (the test suite runs this)
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"

#: Public modules in the order data flows through them.
MODULES = ["rarec", "rarec.data", "rarec.model_selection", "rarec.metrics", "rarec.cf", "rarec.align", "rarec.llm",
           "rarec.testing"]
#: Methods documented for classes (others are inherited plumbing).
SKIP_METHODS = {"get_params", "set_params", "get_metadata_routing", "set_score_request", "set_fit_request",
                "set_output", "fit_transform"}


def _doc(obj) -> str:
    return inspect.cleandoc(obj.__doc__ or "(no docstring)")


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""


def _public_names(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_") and getattr(v, "__module__", "").startswith(module.__name__)]
    return sorted(n for n in names if n != "__version__")


def api_markdown() -> str:
    out = ["# API reference", "",
           "Generated from the docstrings by `python tools/gen_docs.py`; do not edit by hand.", ""]
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        out += [f"## `{module_name}`", "", _doc(module).split("\n\n")[0], ""]
        for name in _public_names(module):
            obj = getattr(module, name)
            if inspect.isclass(obj):
                out += [f"### class `{module_name}.{name}{_signature(obj)}`", "", "```text", _doc(obj), "```", ""]
                for attr, member in sorted(vars(obj).items()):
                    if attr.startswith("_") or attr in SKIP_METHODS:
                        continue
                    func = member.__func__ if isinstance(member, classmethod | staticmethod) else member
                    if inspect.isfunction(func) and func.__doc__:
                        out += [f"#### `{name}.{attr}{_signature(func)}`", "", "```text", _doc(func), "```", ""]
            elif inspect.isfunction(obj):
                out += [f"### `{module_name}.{name}{_signature(obj)}`", "", "```text", _doc(obj), "```", ""]
            else:
                out += [f"### `{module_name}.{name}`", "", f"Constant: `{obj!r}`"[:300], ""]
    return "\n".join(out).rstrip() + "\n"


def cli_markdown() -> str:
    import click

    from rarec.cli import main

    out = ["# Command line", "",
           "Generated from the commands' `--help` by `python tools/gen_docs.py`; do not edit by hand.", "",
           "Every command prints results to stdout (or a file) and progress to stderr. Exit codes: 0 on success, "
           "1 for a data or model error (one `error: ...` line on stderr; `rarec --debug COMMAND` shows the "
           "traceback), 2 for a usage error.", ""]
    context = click.Context(main, info_name="rarec", terminal_width=100, max_content_width=100)
    out += ["## `rarec`", "", "```text", main.get_help(context), "```", ""]
    for name in sorted(main.commands):
        command = main.commands[name]
        sub = click.Context(command, info_name=f"rarec {name}", parent=context, terminal_width=100,
                            max_content_width=100)
        out += [f"## `rarec {name}`", "", "```text", command.get_help(sub), "```", ""]
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stale = []
    for path, text in ((DOCS / "api.md", api_markdown()), (DOCS / "cli.md", cli_markdown())):
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run python tools/gen_docs.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
