"""The whole ML-100K pipeline with every RARecommender default, timed: CF + alignment + evaluation.

    python benchmarks/default_pipeline.py --data ../shared/data/ml-100k

Prints JSON (fit and total seconds, CF epochs, the alignment log, the data
selection, test metrics, peak memory) and writes it to
benchmarks/results/default_pipeline.json; docs/benchmarks.md quotes it by hand.
"""

import argparse
import json
import resource
import time
from pathlib import Path

from rarec import RARecommender
from rarec.data import read_recbole
from rarec.model_selection import leave_last_out

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ml-100k")
parser.add_argument("--param", action="append", default=[], metavar="NAME=JSON",
                    help="override one default, e.g. --param selection='\"random\"' (the result file gets a suffix)")
parser.add_argument("--suffix", default="", help="added to the result file's name")
args = parser.parse_args()
overrides = {name: json.loads(value) for name, value in (item.split("=", 1) for item in args.param)}

start = time.perf_counter()
log, text = read_recbole(args.data).k_core(5)
split = leave_last_out(log, n_valid=0)
rec = RARecommender(random_state=0, verbose=0, **overrides).fit(split.train, item_text=text)
fit_s = time.perf_counter() - start
metrics = rec.evaluate(split.test, ks=(10, 100))
result = {
    "params": {k: v for k, v in rec.get_params().items() if k in ("prefix_layers", "sample_fraction", "selection",
                                                                  "max_train_samples", "epochs", "score_fusion")},
    "fit_s": fit_s,
    "total_s": time.perf_counter() - start,
    "cf_epochs": len(rec.backbone_.training_log_),
    "cf_s": sum(r["seconds"] for r in rec.backbone_.training_log_),
    "align_log": rec.training_log_,
    "selection": rec.selection_report_,
    "trainable": rec.n_trainable_parameters_,
    "trainable_share": rec.n_trainable_parameters_ / rec.n_llm_parameters_,
    "test": metrics,
    "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
}
print(json.dumps(result, indent=1))
out = Path(__file__).resolve().parent / "results" / f"default_pipeline{args.suffix}.json"
out.write_text(json.dumps(result, indent=1) + "\n")
