"""RA-Rec on MovieLens-100K from a path: fit, evaluate by full ranking, save.

    python examples/movielens.py --data ../shared/data/ml-100k            # default LLM: tens of minutes on a CPU
    python examples/movielens.py --data ../shared/data/ml-100k --tiny     # a tiny random LLM: a smoke run

The folder holds RecBole's ml-100k.inter and ml-100k.item (a MovieLens
release folder with u.data and u.item works too). Protocol as in
docs/benchmarks.md: 5-core, leave-one-out, every earlier item excluded.
"""

import argparse
from pathlib import Path

from rarec import RARecommender
from rarec.data import load_dataset
from rarec.model_selection import leave_last_out

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data", default="../shared/data/ml-100k", help="the MovieLens-100K folder")
parser.add_argument("--output", default=None, help="save the fitted model to this folder")
parser.add_argument("--tiny", action="store_true", help="a tiny random LLM and short training (a smoke run)")
args = parser.parse_args()

log, titles = load_dataset(args.data).k_core(5)  # 943 users, 1,349 items, 99,287 interactions
split = leave_last_out(log, n_valid=0)  # the last item of every user is the test item
print(f"{log.n_users} users, {log.n_items} items, {len(log)} interactions; e.g. {titles[log.items.ids[0]].render()!r}")

llm = None
if args.tiny:
    from rarec.testing import tiny_llm

    llm = tiny_llm(titles)
rec = RARecommender(
    backbone="sasrec",
    backbone_params={"dim": 64, "n_layers": 2, "n_heads": 2, "inner_dim": 256, "dropout": 0.5, "max_len": 50},
    cf_epochs=3 if args.tiny else 200,
    llm=llm,
    epochs=1 if args.tiny else 2,
    max_train_samples=64 if args.tiny else 1000,
    random_state=0,
    verbose=0 if args.tiny else 1,
)
rec.fit(split.train, item_text=titles)  # its own validation: each user's last training item
metrics = rec.evaluate(split.test, ks=(10, 100))
print(f"test NDCG@10 {metrics['ndcg@10']:.4f}  HR@10 {metrics['hr@10']:.4f}  HR@100 {metrics['hr@100']:.4f}")
if args.output:
    print(f"saved to {rec.save(Path(args.output))}")
