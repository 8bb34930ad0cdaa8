"""Every real-data benchmark of issue #7 in one run; regenerates docs/benchmarks.md and its plots.

    python benchmarks/run_all.py --data ../shared/data/ml-100k
    python benchmarks/run_all.py --data ../shared/data/ml-100k --parts quality       # one part
    python benchmarks/run_all.py --render                                              # docs only

Parts, each a script of its own (see its docstring), run in this order:

- ``quality``: alignment_quality.py, CPU preset (RA-Rec on SASRec, ComiRec and
  BPR over three alignment seeds, each against the backbone inside it;
  popularity; the text-only LLM; the three ablations);
- ``efficiency``: efficiency.py (trainable parameters per setting, prompt
  tokens per user against ID translation, seconds per 1,000 training
  samples, items/s, users/s, peak memory);
- ``limits``: compute_limits.py (matmul peak, achieved FLOP/s, profile, the
  cost of a LoRA-style or full fine-tune step).

Each part's minutes go to results/run_all.json and the docs section "Running
every benchmark". The default parts took 59 min 59.8 s of wall clock in one
run on the quiet 2-core CPU (quality 54.3, efficiency 2.2, limits 3.1
minutes): within the hour, with no margin. Not in the default run, because
they do not fit that hour on this CPU:

- ``fractions``: the quality-vs-sample_fraction curve (efficient_tuning.py
  ``--parts fractions``; about 70 minutes here). Without it, the curve and
  its plot are rendered from the saved results;
- ``cf``: cf_quality.py with every CF model's own seed and settings (about
  11 minutes; the quality part already reports the backbones inside RA-Rec);
- ``diagnostics``: vector_diagnostics.py (one more fit, about 5 minutes);
- ``scale``: ranking_scale.py (100,000 users x 1,000,000 items, about 16 minutes);
- ``ann``: ann_recall.py (the approximate index against exact top-k on
  1,000,000 synthetic vectors, with faiss for comparison when installed;
  about 10 minutes).

Every part's docs section is rendered from its saved JSON at the end, so a
part not run keeps its last figures. GPU rows come from the same scripts run
on a GPU (``alignment_quality.py --preset gpu``, ``compute_limits.py --device
cuda``, ``device_speed.py``); their JSON files are rendered here too.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

from common import write_section

HERE = Path(__file__).resolve().parent
DEFAULT_PARTS = ("quality", "efficiency", "limits")


def commands(data: Path) -> dict[str, list[str]]:
    return {
        "quality": ["alignment_quality.py", "--data", str(data)],
        "efficiency": ["efficiency.py", "--data", str(data)],
        "limits": ["compute_limits.py", "--data", str(data)],
        "fractions": ["efficient_tuning.py", "--data", str(data), "--parts", "fractions"],
        "cf": ["cf_quality.py", "--data", str(data)],
        "diagnostics": ["vector_diagnostics.py", "--data", str(data)],
        "scale": ["ranking_scale.py"],
        "ann": ["ann_recall.py"] + (["--faiss"] if importlib.util.find_spec("faiss") else []),
        "objectives": ["objective_study.py", "--data", str(data)],
    }


RENDERS = [
    ["alignment_quality.py", "--render"],
    ["compute_limits.py", "--render"],
    ["efficient_tuning.py", "--render"],
    ["vector_diagnostics.py", "--render"],
    ["ranking_scale.py", "--render"],
    ["ann_recall.py", "--render"],
]


def run(script: list[str], output: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, str(HERE / script[0]), *script[1:], "--output", str(output)], check=True,
                   cwd=HERE)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/ml-100k")
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS),
                        help=f"comma-separated, from {', '.join(commands(Path()))} (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=HERE.parent / "docs/benchmarks.md")
    parser.add_argument("--render", action="store_true", help="only re-render the docs from saved results")
    args = parser.parse_args()
    timings_file = HERE / "results" / "run_all.json"
    if not args.render:
        table = commands(args.data)
        parts = [p for p in args.parts.split(",") if p]
        unknown = sorted(set(parts) - set(table))
        if unknown:
            parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(table)}")
        # Parts not run this time keep their last timing, so the total is always of the latest run of each part.
        timings = json.loads(timings_file.read_text())["parts"] if timings_file.exists() else {}
        for part in parts:
            print(f"== {part}: {' '.join(table[part])}", file=sys.stderr)
            timings[part] = run(table[part], args.output)
            timings_file.write_text(json.dumps({"parts": timings}, indent=1) + "\n")
    for script in RENDERS:
        run(script, args.output)
    if timings_file.exists():
        saved = json.loads(timings_file.read_text())
        rows = [f"| {part} | {seconds / 60:.1f} |" for part, seconds in saved["parts"].items()]
        default_total = sum(saved["parts"].get(part, 0.0) for part in DEFAULT_PARTS)
        write_section(args.output, "\n".join([
            "## Running every benchmark", "",
            "Reproduce: `python benchmarks/run_all.py --data ../shared/data/ml-100k` (2-core CPU). Minutes per "
            "part, each from its latest run:", "", "| part | minutes |", "|---|---|", *rows,
            f"| **default parts ({', '.join(DEFAULT_PARTS)})** | **{default_total / 60:.1f}** |", ""]) + "\n",
            marker="run-all")
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
