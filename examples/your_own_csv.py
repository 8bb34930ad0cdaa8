"""Bring your own data: a CSV of interactions and a CSV of titles.

    python examples/your_own_csv.py interactions.csv items.csv

interactions.csv needs the columns user_id,item_id[,timestamp]; items.csv
item_id,title[,genres] with genres separated by '|'. Without arguments, the
example writes a small pair of files itself and uses those.
"""

import sys
import tempfile
from pathlib import Path

from rarec.cf import TrainingConfig, make_backbone
from rarec.data import make_interactions, read_csv
from rarec.metrics import full_ranking_metrics
from rarec.model_selection import leave_last_out

if len(sys.argv) == 3:
    interactions, items = Path(sys.argv[1]), Path(sys.argv[2])
else:  # write a demonstration pair of files
    folder = Path(tempfile.mkdtemp())
    log, titles = make_interactions(n_users=100, n_items=50, random_state=0)
    interactions, items = folder / "interactions.csv", folder / "items.csv"
    rows = [f"{u},{i},{t:.0f}" for u, i, t in log.to_array()]
    interactions.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    lines = [f'{i},"{t.title}",{"|".join(t.categories)}' for i, t in titles.items()]
    items.write_text("item_id,title,genres\n" + "\n".join(lines) + "\n")

log, titles = read_csv(interactions, items=items, categories_col="genres")
print(f"read {len(log)} interactions of {log.n_users} users on {log.n_items} items ({len(titles)} titles)")
split = leave_last_out(log)
model = make_backbone("sasrec", TrainingConfig(epochs=20, random_state=0, verbose=False), dim=32, max_len=25)
model.fit(split.train, split.valid)
metrics = full_ranking_metrics(model.scorer(split.before_test), split.test, split.before_test, ks=[10])
print(f"SASRec on your data: HR@10 {metrics['hr@10']:.3f}, NDCG@10 {metrics['ndcg@10']:.3f}")
top, _ = model.recommend([0], k=3, history=split.before_test)
print("top-3 for the first user:", [titles[i].title for i in log.items.decode(top[0])])
