"""The whole ML-100K pipeline with every RARecommender default, timed: CF + alignment + evaluation.

    python benchmarks/default_pipeline.py --data ../shared/data/ml-100k

Prints JSON (fit and total seconds, CF epochs, the alignment log, test
metrics, peak memory); docs/benchmarks.md quotes it by hand.
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
args = parser.parse_args()

start = time.perf_counter()
log, text = read_recbole(args.data).k_core(5)
split = leave_last_out(log, n_valid=0)
rec = RARecommender(random_state=0, verbose=0).fit(split.train, item_text=text)
fit_s = time.perf_counter() - start
metrics = rec.evaluate(split.test, ks=(10, 100))
print(json.dumps({
    "fit_s": fit_s,
    "total_s": time.perf_counter() - start,
    "cf_epochs": len(rec.backbone_.training_log_),
    "cf_s": sum(r["seconds"] for r in rec.backbone_.training_log_),
    "align_log": rec.training_log_,
    "test": metrics,
    "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
}, indent=1))
