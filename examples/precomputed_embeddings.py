"""Bring your own CF embeddings: RA-Rec aligns any ID model's vectors, not only rarec's backbones.

    python examples/precomputed_embeddings.py          # the default LLM
    python examples/precomputed_embeddings.py --tiny   # a tiny random LLM: seconds

Here the "other model" is a truncated SVD of the user-item matrix; yours
might be LightGCN, a two-tower model in production, or anything else that
gives one vector per item (and optionally one or K per user). Row i must
belong to item index i of the log: InteractionLog.from_any(X).items maps raw
ids to those indices.
"""

import argparse

import numpy as np
from scipy.sparse.linalg import svds

from rarec import RARecommender
from rarec.data import InteractionLog, make_interactions
from rarec.model_selection import leave_last_out

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--tiny", action="store_true", help="use a tiny random LLM instead of the default model")
args = parser.parse_args()

log, titles = make_interactions(n_users=150, n_items=60, random_state=0)
split = leave_last_out(log, n_valid=0)
X = split.train.to_array()

# Your model: here, 16-dimensional SVD factors of the training matrix, in the log's index order.
train = InteractionLog.from_any(X)
u, s, vt = svds(train.to_csr().astype(np.float64), k=16)
item_embeddings = (vt.T * np.sqrt(s)).astype(np.float32)  # (n_items, 16)
user_embeddings = (u * np.sqrt(s)).astype(np.float32)  # (n_users, 16)
print(f"embeddings: items {item_embeddings.shape}, users {user_embeddings.shape}")

llm = None
if args.tiny:
    from rarec.testing import tiny_llm

    llm = tiny_llm(titles)
rec = RARecommender(
    backbone="precomputed",
    backbone_params={"item_embeddings": item_embeddings, "user_embeddings": user_embeddings},
    llm=llm, epochs=4 if args.tiny else 3, max_train_samples=256 if args.tiny else 400, random_state=0, verbose=0,
)
rec.fit(X, item_text=titles)
print(f"test NDCG@10: {rec.score(split.test.to_array()):.3f}")
print("top-5 for user 0:", [titles[i].title for i in rec.recommend(0, k=5)[0]])
