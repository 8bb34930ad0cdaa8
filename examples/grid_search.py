"""Tune RA-Rec with GridSearchCV and LeaveLastOut: no fold ever trains on the future.

    python examples/grid_search.py          # the default LLM (several minutes per fit on a CPU)
    python examples/grid_search.py --tiny   # a tiny random LLM: seconds

Each candidate is fitted on every user's interactions before their last one
and scored (RARecommender.score: NDCG@10, full ranking) on that last one. The
test items split off first are never seen by the search.
"""

import argparse

from sklearn.model_selection import GridSearchCV

from rarec import LeaveLastOut, RARecommender
from rarec.data import make_interactions
from rarec.model_selection import leave_last_out

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--tiny", action="store_true", help="use a tiny random LLM instead of the default model")
args = parser.parse_args()

log, titles = make_interactions(n_users=120, n_items=48, random_state=0)
split = leave_last_out(log, n_valid=0)  # keep a final test set out of the search

llm = None
if args.tiny:
    from rarec.testing import tiny_llm

    llm = tiny_llm(titles)
base = RARecommender(
    backbone_params={"dim": 32, "n_layers": 1, "inner_dim": 64, "max_len": 20},
    llm=llm, cf_epochs=20, epochs=2, max_train_samples=128 if args.tiny else 256, random_state=0, verbose=0,
)
grid = {"n_ctx": [0, 4]}  # add more parameters as you like: {"n_ctx": [0, 4], "align_weight": [0.0, 0.1]}
search = GridSearchCV(base, grid, cv=LeaveLastOut(n_splits=1))  # score: NDCG@10 of the held-out fold
search.fit(split.train.to_array(), item_text=titles)  # item_text is routed to every fit

for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
    print(f"{params}: validation NDCG@10 {score:.3f}")
print(f"best: {search.best_params_}")
print(f"test NDCG@10 of the refitted best model: {search.best_estimator_.score(split.test.to_array()):.3f}")
