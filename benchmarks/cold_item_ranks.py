"""Where do cold items land in RA-Rec's ranking? A quick diagnostic for the cold-item benchmark.

    python benchmarks/cold_item_ranks.py                       # ML-100K, a small fit (about 7 min on 2 cores)
    python benchmarks/cold_item_ranks.py --sample-fraction 0.05
    python benchmarks/cold_item_ranks.py --neighbours "" --id-dropout 0.2   # trained with ID dropout

The cold split of ``cold_items.py`` (10% of the items held out of training,
seed 0); one RA-Rec fit on the warm log with ``sample_fraction`` of the
samples (default 1%, the CPU preset) and a short CF fit; then ``add_items``
encodes the cold items from their text (session 17 measured it with the
mean CF item embedding as their ID prefix, the fallback of the time; now
the nearest warm item's by text). Printed: how alike the cold items'
vectors are (mean cosine after subtracting the catalogue's mean vector),
their mean rank against the warm items' over every user, how many cold items
an average user has in their top 100 (at random: cold share × 100), and the
cold test of ``cold_items.py``. With ``--neighbours K[,K...]`` (default 10)
the same again after each cold item's ID prefix is replaced by the mean CF
embedding of the K warm items whose TF-IDF (title + categories) is closest
to its own (as it is, then rescaled to the warm embeddings' mean norm, since
a mean of K embeddings is shrunk), and the cold items are re-encoded: does
the ID path, which the trained towers rank through, carry the text's
signal? Nothing is written.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from cold_items import COLD_FRACTION, SPLIT_SEED, as_log, cold_split, tfidf_items, warm_catalogue
from common import alignment_overrides, read_dataset

from rarec import RARecommender

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/ml-100k")
    parser.add_argument("--sample-fraction", type=float, default=0.01)
    parser.add_argument("--cf-epochs", type=int, default=30)
    parser.add_argument("--neighbours", default="10",
                        help="comma-separated counts K: then give each cold item the mean CF embedding of its K "
                             "TF-IDF-nearest warm items as its ID prefix (as it is, and rescaled to the warm items' "
                             "mean norm) and report again; empty: skip")
    parser.add_argument("--id-dropout", type=float, default=0.0,
                        help="train with this share of the batch's items given their text neighbour's CF embedding "
                             "as ID prefix (AlignmentConfig.id_dropout)")
    args = parser.parse_args()
    log, text = read_dataset(args.data)
    texts = text.align(log.items, on_unknown="ignore")
    train, pairs, cold = cold_split(log, COLD_FRACTION, SPLIT_SEED)
    warm, warm_text, cold_text = warm_catalogue(train, texts, cold)
    start = time.perf_counter()
    rec = RARecommender(random_state=0, verbose=0, sample_fraction=args.sample_fraction, cf_epochs=args.cf_epochs)
    with alignment_overrides(id_dropout=args.id_dropout):
        rec.fit(warm, item_text=warm_text)
    print("validation NDCG@10 by round:", [round(r["valid_ndcg@10"], 4) for r in rec.training_log_
                                          if "valid_ndcg@10" in r])
    n_warm = rec.n_items_
    rec.add_items(cold_text)
    print(f"fit + add_items: {time.perf_counter() - start:.0f} s; {n_warm} warm items, {rec.n_items_ - n_warm} cold")
    test = as_log(pairs, log)
    held = list(zip(test.users.decode(test.user_codes), test.items.decode(test.item_codes)))
    report(rec, n_warm, held, "ID prefix of a cold item: add_items' (the CF embedding of its TF-IDF-nearest warm "
                              "item; the mean CF item embedding up to rarec 0.2.0)")
    if args.neighbours:
        towers = rec.towers_
        items = tfidf_items(towers.texts)
        order = np.argsort(-(items[n_warm:] @ items[:n_warm].T).toarray(), axis=1)
        cf = towers.item_cf[:n_warm, 0].clone()
        typical_norm = cf.norm(dim=1).mean()
        for k in map(int, args.neighbours.split(",")):
            prefix = torch.stack([cf[torch.as_tensor(row[:k])].mean(0) for row in order])
            for rescaled in (False, True):
                towers.item_cf[n_warm:, 0] = prefix * typical_norm / prefix.norm(dim=1, keepdim=True) if rescaled \
                    else prefix
                rec.item_vectors_[n_warm:] = towers.encode_items(np.arange(n_warm, rec.n_items_))
                report(rec, n_warm, held, f"ID prefix of a cold item: the mean CF embedding of its {k} TF-IDF-nearest "
                                          "warm items" + (", rescaled to the warm items' mean norm" if rescaled else ""))


def report(rec: RARecommender, n_warm: int, held: list, label: str) -> None:
    vectors = rec.item_vectors_
    centred = torch.nn.functional.normalize(vectors - vectors.mean(0), dim=1)
    warm_v, cold_v = centred[:n_warm], centred[n_warm:]
    print(f"\n{label}")
    print(f"mean centred cosine: warm-warm {(warm_v @ warm_v.T).mean():.3f}, cold-cold {(cold_v @ cold_v.T).mean():.3f},"
          f" warm-cold {(warm_v @ cold_v.T).mean():.3f}")
    rank = (rec.user_vectors_ @ vectors.T).argsort(1, descending=True).argsort(1).float()
    print(f"mean rank (0 = best) over every user: warm {rank[:, :n_warm].mean():.0f}, cold {rank[:, n_warm:].mean():.0f}"
          f" of {len(vectors)}")
    print(f"cold items in a user's top 100: {(rank[:, n_warm:] < 100).float().sum(1).mean():.3f} on average "
          f"({100 * len(cold_v) / len(vectors):.1f} at random)")
    print(f"cold test ({len(held)} users):", rec.evaluate(held, ks=(10, 100), metrics=("hr", "ndcg")))


if __name__ == "__main__":
    main()
