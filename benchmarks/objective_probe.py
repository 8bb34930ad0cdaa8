"""The alignment objectives without an LLM: which ones can reach the backbone at all?

    python benchmarks/objective_probe.py               # ML-100K, about two minutes on a 2-core CPU
    python benchmarks/objective_probe.py --render      # docs section from the saved JSON
    python benchmarks/objective_probe.py --data ../shared/data/amazon-beauty   # the sparse, text-rich setting

Each tower is a linear map of a CF vector (the shared SASRec of
``objective_study.py``: its user vector for the history, its item embedding)
into 576 dimensions, SmolLM2's width, scored by the dot product / sqrt(576),
and trained on the same selected (history, next item) samples, with the same
batch size and learning rate as the alignment module. Nothing else changes
between rows but the objective: which items are candidates, which of them get
a gradient, and whether the backbone's own ranking is distilled. A linear
tower can copy the backbone exactly, so a row that stays below it shows what
the objective itself costs; the LLM can only do worse.

Results: benchmarks/results/objective_probe.json (ML-100K) or
objective_probe_<dataset folder>.json; each dataset has its own docs section.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from cold_items import tfidf_items, tfidf_scorer, tfidf_users
from common import DATASET_TITLES, dataset_suffix, read_dataset, write_section
from objective_study import HERE, shared_sasrec

from rarec._scoring import standardise
from rarec.align import all_next_item_samples, distillation_loss, select_alignment_samples
from rarec.data import ItemTextTable
from rarec.metrics import full_ranking_metrics
from rarec.model_selection import leave_last_out

WIDTH, BATCH, LR, REFRESH = 576, 16, 1e-2, 50
#: name -> (candidates, random extras, distill weight[, options: teacher temperature (default 1), text features])
#: "full": every item live (the exact softmax; affordable only without an LLM);
#: "bank": every item, only the batch's targets live, the rest from a bank re-encoded every 50 steps (RA-Rec's
#: negatives="catalogue"); "in_batch": the batch's targets plus random extras, live, with the logQ correction;
#: "in_batch_mined": the same, but the extras are each user's top items under the teacher (extras / batch per user).
VARIANTS = {
    "full softmax (every item live)": ("full", 0, 0.0),
    "catalogue bank (batch items live)": ("bank", 0, 0.0),
    "in-batch, no logQ": ("in_batch_raw", 0, 0.0),
    "in-batch + logQ": ("in_batch", 0, 0.0),
    "in-batch + logQ + 64 random": ("in_batch", 64, 0.0),
    "full softmax + distill 0.9": ("full", 0, 0.9),
    "catalogue bank + distill 0.9": ("bank", 0, 0.9),
    "in-batch + logQ + distill 0.9": ("in_batch", 0, 0.9),
    "in-batch + logQ + 64 random + distill 0.9": ("in_batch", 64, 0.9),
    "in-batch + logQ + 64 teacher-top + distill 0.9": ("in_batch_mined", 64, 0.9),
    "in-batch + logQ + 64 random + distill 0.9, teacher T 0.5": ("in_batch", 64, 0.9, dict(temperature=0.5)),
    "in-batch + logQ + 64 random + distill 0.9, teacher T 2": ("in_batch", 64, 0.9, dict(temperature=2.0)),
    "in-batch + logQ + 64 random + distill 0.7": ("in_batch", 64, 0.7),
    # can text add what the backbone lacks? the towers also see TF-IDF features of titles and genres
    "+ text features, distill 0.9": ("in_batch", 64, 0.9, dict(text=True)),
    "+ text features, distill 0.5": ("in_batch", 64, 0.5, dict(text=True)),
    "+ text features, full softmax, no distill": ("full", 0, 0.0, dict(text=True)),
    # can a student learn text from a teacher that has it? the teacher adds w x TF-IDF cosine (w in CF-score stds)
    "+ text features (256), hybrid teacher 0.25, distill 0.9": ("in_batch", 64, 0.9,
                                                                 dict(text=True, text_dim=256, teacher_text=0.25)),
    "+ text features (256), hybrid teacher 0.5, distill 0.9": ("in_batch", 64, 0.9,
                                                                dict(text=True, text_dim=256, teacher_text=0.5)),
    "+ text features (256), distill 0.9": ("in_batch", 64, 0.9, dict(text=True, text_dim=256)),
    # does annealing the learning rate (cosine from LR to 0 over the run) let the towers settle nearer the teacher?
    "in-batch + logQ + 64 random + distill 0.9, cosine lr decay": ("in_batch", 64, 0.9, dict(schedule="cosine")),
}
#: Size of the probe's text features (TF-IDF of title and categories, reduced by truncated SVD).
TEXT_DIM = 64
#: Weights of the TF-IDF score in the fusion rows (each score standardised per user first, as score_fusion does).
TEXT_FUSION_WEIGHTS = (0.25, 0.5, 1.0)


def text_fusion_rows(backbone, inner, texts) -> list[dict]:
    """Does text hold what the backbone lacks? SASRec's score plus w x a full TF-IDF cosine, no training."""

    cf, text = backbone.scorer(inner.train), tfidf_scorer(inner.train, texts)
    rows = []
    for weight in (*TEXT_FUSION_WEIGHTS, None):  # None: TF-IDF alone
        def score(users, weight=weight):
            return text(users) if weight is None else standardise(cf(users)) + weight * standardise(text(users))
        found = full_ranking_metrics(score, inner.test, inner.train, ks=[10, 100], metrics=["ndcg", "hr"])
        rows.append({"weight": weight, "valid_ndcg@10": found["ndcg@10"], "valid_hr@100": found["hr@100"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def text_features(texts, dim: int = TEXT_DIM) -> torch.Tensor:
    """Each item's title and categories as TF-IDF reduced to ``dim`` dimensions, unit length (n_items, dim)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    documents = [t.render() if t is not None else "" for t in texts]
    reduced = TruncatedSVD(dim, random_state=0).fit_transform(TfidfVectorizer(min_df=2).fit_transform(documents))
    reduced /= np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-12)
    return torch.as_tensor(reduced, dtype=torch.float32)


def lr_decay(optimizer, schedule: str, total: int):
    """The learning rate throughout ("constant"), or decayed from it to 0 along a cosine over ``total`` steps."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 1.0 if schedule == "constant" else 0.5 * (1 + np.cos(np.pi * step / total)))


def sampled_log_q(targets: torch.Tensor, n_items: int, extras: int) -> torch.Tensor:
    """log of each item's expected draws per batch of BATCH targets plus ``extras`` uniform items (the logQ term)."""
    draws = BATCH * np.bincount(targets.numpy(), minlength=n_items) / len(targets) + extras / n_items
    return torch.as_tensor(np.log(np.maximum(draws, 1e-12)), dtype=torch.float32)


def train_towers(user_cf, targets, item_cf, candidates, extras, distill, epochs, seed, temperature=1.0, text=None,
                 teacher_text=None, schedule="constant"):
    """Linear user and item towers trained on (user CF vector, next item) pairs; returns them.

    ``text``: optional (user, item) text features appended to the towers' inputs.
    ``teacher_text``: optional (user rows, item rows, weight): the teacher's logits gain weight x the cosine of
    the sample's and each candidate's sparse TF-IDF rows (a hybrid teacher; otherwise it is the CF score alone).
    ``schedule``: "constant" (the learning rate LR throughout) or "cosine" (from LR down to 0 over the run).
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # nn.Linear's initial weights
    user_in, item_in = (user_cf, item_cf) if text is None else (torch.cat([user_cf, text[0]], 1),
                                                                 torch.cat([item_cf, text[1]], 1))
    n_items, dim = item_in.shape
    user_tower, item_tower = torch.nn.Linear(dim, WIDTH), torch.nn.Linear(dim, WIDTH)
    optimizer = torch.optim.Adam([*user_tower.parameters(), *item_tower.parameters()], lr=LR)
    decay = lr_decay(optimizer, schedule, epochs * -(-len(targets) // BATCH))
    log_q = sampled_log_q(targets, n_items, extras)
    bank, step = None, 0
    for _ in range(epochs):
        for rows in torch.randperm(len(targets), generator=generator).split(BATCH):
            target = targets[rows]
            if candidates == "full":
                items, positive, vectors = torch.arange(n_items), target, item_tower(item_in)
            elif candidates == "bank":
                if bank is None or step % REFRESH == 0:
                    with torch.no_grad():
                        bank = item_tower(item_in)
                live = torch.unique(target)
                items, positive = torch.arange(n_items), target
                vectors = bank.index_copy(0, live, item_tower(item_in[live]))
            else:
                if candidates == "in_batch_mined":  # each user's top items under the teacher
                    extra = (user_cf[rows] @ item_cf.T).topk(max(1, extras // len(rows)), dim=1).indices.flatten()
                else:
                    extra = torch.randint(0, n_items, (extras,), generator=generator)
                items, positive = torch.unique(torch.cat([target, extra]), return_inverse=True)
                positive = positive[: len(target)]
                vectors = item_tower(item_in[items])
            scores = user_tower(user_in[rows]) @ vectors.T / WIDTH ** 0.5
            teacher = user_cf[rows] @ item_cf[items].T / temperature  # scaled before logQ, as RARecommender does
            if teacher_text is not None:
                user_rows, item_rows, weight = teacher_text
                cosine = (user_rows[rows.numpy()] @ item_rows[items.numpy()].T).toarray()
                teacher = teacher + weight * torch.as_tensor(cosine, dtype=torch.float32)
            if candidates in ("in_batch", "in_batch_mined"):
                scores, teacher = scores - log_q[items], teacher - log_q[items]
            loss = torch.nn.functional.cross_entropy(scores, positive)
            if distill:
                loss = (1 - distill) * loss + distill * distillation_loss(scores, teacher, 1.0)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            decay.step()
            step += 1
    return user_tower, item_tower


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/ml-100k")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default="", help="names of VARIANTS separated by semicolons (default: all); "
                        "rows of the others are kept from the saved results")
    parser.add_argument("--render", action="store_true")
    parser.add_argument("--output", type=Path, default=HERE.parent / "docs/benchmarks.md")
    args = parser.parse_args()
    suffix = dataset_suffix(args.data)
    results = HERE / "results" / f"objective_probe{suffix}.json"
    if not args.render:
        log, text = read_dataset(args.data)
        split = leave_last_out(log, n_valid=0)
        backbone = shared_sasrec(split.train, HERE / "output" / f"objective_study_sasrec{suffix}")
        inner = leave_last_out(split.train, n_valid=0)  # what RARecommender validates on
        sequences = inner.train.user_sequences()
        texts = ItemTextTable.from_any(text).align(log.items, on_unknown="raise")
        item_cf = backbone.item_embeddings()
        users = np.unique(inner.test.user_codes)
        user_table = torch.zeros(inner.train.n_users, item_cf.shape[1])
        user_table[users] = backbone.user_embeddings([sequences[u][-50:] for u in users], users)[:, 0]
        popularity = np.log1p(np.bincount(inner.train.item_codes, minlength=log.n_items))

        features = {}  # text dim -> (user rows, item rows) of the probe's dense text features

        def text_of(dim):
            if dim not in features:
                items_dense = text_features(texts, dim)
                users_dense = torch.zeros(inner.train.n_users, dim)
                users_dense[users] = torch.stack([items_dense[sequences[u][-50:]].mean(0) for u in users])
                features[dim] = (users_dense, items_dense)
            return features[dim]

        def metrics(user_tower, item_tower, text_dim=None):
            user_in, item_in = (user_table, item_cf) if text_dim is None else \
                (torch.cat([user_table, text_of(text_dim)[0]], 1), torch.cat([item_cf, text_of(text_dim)[1]], 1))
            with torch.no_grad():
                user_vectors, item_vectors = user_tower(user_in), item_tower(item_in)
                bias = (user_vectors[users].mean(0) @ item_vectors.T).numpy()
            found = full_ranking_metrics(lambda u: user_vectors[u] @ item_vectors.T, inner.test, inner.train,
                                         ks=[10, 100], metrics=["ndcg", "hr"])
            return {"valid_ndcg@10": found["ndcg@10"], "valid_hr@100": found["hr@100"],
                    "popularity_corr": float(np.corrcoef(bias, popularity)[0, 1])}

        # the hybrid teacher's TF-IDF cosine, in units of the CF score's spread (as the fusion rows standardise)
        sparse_items = tfidf_items(texts)
        probe_users = users[:1000]
        cf_spread = float((user_table[probe_users] @ item_cf.T).std(1).mean())
        cosine_spread = float(np.std((tfidf_users(inner.train.to_csr()[probe_users], sparse_items)
                                      @ sparse_items.T).toarray(), axis=1).mean())

        kept = json.loads(results.read_text())["rows"] if args.variants and results.exists() else []
        kept = [r for r in kept if r["variant"] not in args.variants.split(";")]
        result = {"dataset": args.data.name, "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
                  "backbone": metrics(torch.nn.Identity(), torch.nn.Identity()), "rows": kept,
                  "text_fusion": text_fusion_rows(backbone, inner, texts)}
        samples = all_next_item_samples(sequences)
        for fraction, epochs in ((0.01, 3), (0.05, 3)):
            chosen, _ = select_alignment_samples(samples, sequences, texts, fraction, np.random.default_rng(0))
            histories = [sequences[u][max(0, e - 50):e] for u, e in zip(chosen.users, chosen.ends)]
            user_cf = backbone.user_embeddings(histories, chosen.users)[:, 0]
            targets = torch.as_tensor(chosen.targets)
            history_rows = sp.csr_matrix((np.ones(sum(map(len, histories)), dtype=np.float32),
                                          np.concatenate(histories), np.cumsum([0, *map(len, histories)])),
                                         shape=(len(histories), log.n_items))
            sample_rows = tfidf_users(history_rows, sparse_items)
            for name, objective in VARIANTS.items():
                if args.variants and name not in args.variants.split(";"):
                    continue
                options = objective[3] if len(objective) > 3 else {}
                text_dim = options.get("text_dim", TEXT_DIM) if options.get("text") else None
                text = None
                if text_dim is not None:
                    item_dense = text_of(text_dim)[1]
                    text = (torch.stack([item_dense[h].mean(0) for h in histories]), item_dense)
                teacher_text = None if "teacher_text" not in options else \
                    (sample_rows, sparse_items, options["teacher_text"] * cf_spread / cosine_spread)
                for seed in map(int, args.seeds.split(",")):
                    towers = train_towers(user_cf, targets, item_cf, *objective[:3], epochs, seed,
                                          options.get("temperature", 1.0), text, teacher_text,
                                          options.get("schedule", "constant"))
                    row = {"variant": name, "fraction": fraction, "epochs": epochs, "samples": len(chosen),
                           "seed": seed, **metrics(*towers, text_dim=text_dim)}
                    result["rows"].append(row)
                    print(json.dumps(row), flush=True)
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(result, indent=1) + "\n")
    write_section(args.output, render(json.loads(results.read_text())),
                  marker="objective-probe" + suffix.replace("_", "-"))


def render(result: dict) -> str:
    def cell(values):
        return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 \
            else f"{values[0]:.4f}"

    backbone = result["backbone"]
    dataset = result.get("dataset", "ml-100k")
    lines = [f"## The objectives without an LLM ({DATASET_TITLES.get(dataset, dataset)}, linear towers on SASRec's "
             "vectors)", "",
             f"Written by `benchmarks/objective_probe.py` on {result['machine']}. Validation split of the "
             "objective study; mean ± std over seeds; the last column is the correlation of each item's mean "
             "score with its log popularity.", "",
             "| objective | samples × epochs | valid NDCG@10 | valid HR@100 | popularity corr. |",
             "|---|---|---|---|---|",
             f"| SASRec backbone itself | – | {backbone['valid_ndcg@10']:.4f} | {backbone['valid_hr@100']:.4f} | "
             f"{backbone['popularity_corr']:.2f} |"]
    for fraction in sorted({r["fraction"] for r in result["rows"]}):
        for name in VARIANTS:
            rows = [r for r in result["rows"] if r["variant"] == name and r["fraction"] == fraction]
            if rows:
                lines.append(f"| {name} | {rows[0]['samples']:,} × {rows[0]['epochs']} | "
                             f"{cell([r['valid_ndcg@10'] for r in rows])} | {cell([r['valid_hr@100'] for r in rows])} | "
                             f"{statistics.mean(r['popularity_corr'] for r in rows):.2f} |")
    if result.get("text_fusion"):
        lines += ["", "Is there anything in the text that the backbone lacks? No training: SASRec's score plus w times "
                  "the cosine of TF-IDF vectors of titles and categories (user = mean of their history's vectors), "
                  "each standardised per user, on the same validation split:", "",
                  "| score | valid NDCG@10 | valid HR@100 |", "|---|---|---|"]
        for r in result["text_fusion"]:
            label = "TF-IDF alone" if r["weight"] is None else f"SASRec + {r['weight']} × TF-IDF"
            lines.append(f"| {label} | {r['valid_ndcg@10']:.4f} | {r['valid_hr@100']:.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
