"""The CF backbones on MovieLens-100K, evaluated by full ranking (the benchmark protocol in small).

    python examples/movielens_backbones.py --data ../shared/data/ml-100k
"""

import argparse

from rarec.cf import PopularityRecommender, TrainingConfig, make_backbone
from rarec.data import read_recbole
from rarec.metrics import full_ranking_metrics
from rarec.model_selection import leave_last_out

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data", default="../shared/data/ml-100k", help="folder with ml-100k.inter and ml-100k.item")
parser.add_argument("--epochs", type=int, default=30)
args = parser.parse_args()

log, titles = read_recbole(args.data).k_core(5)  # 943 users, 1,349 items, 99,287 interactions
split = leave_last_out(log)  # last item: test; the one before: validation


def report(name, scorer):
    m = full_ranking_metrics(scorer, split.test, split.before_test, ks=(10, 100))
    print(f"{name:<10} HR@10 {m['hr@10']:.4f}  NDCG@10 {m['ndcg@10']:.4f}  HR@100 {m['hr@100']:.4f}")


report("popularity", PopularityRecommender().fit(split.before_test).score_users)
for name in ("bpr", "sasrec"):
    model = make_backbone(name, TrainingConfig(epochs=args.epochs, random_state=0))
    model.fit(split.train, split.valid)  # early stopping on validation NDCG@10
    report(name, model.scorer(split.before_test))  # test histories include the validation item
