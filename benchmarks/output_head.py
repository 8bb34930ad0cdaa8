"""Can a linear head on the LLM's output, trained on cached tower vectors, close the gap to the backbone?

    python benchmarks/output_head.py                  # ML-100K: one default fit (cached), its vectors, the heads
    python benchmarks/output_head.py --render         # docs section from the saved JSON
    python benchmarks/output_head.py --data ../shared/data/amazon-beauty --users 4000

One default RA-Rec fit (seed 0, the shared SASRec of ``objective_study.py``)
is saved under benchmarks/output/. Its frozen towers then encode, once, the
users of its training samples (the same selection the fit makes), the
validation users and the whole catalogue. On those fixed vectors a linear
map per tower (576 x 576 plus a bias, starting at the identity, so that step
0 is exactly the fitted model) is trained with the alignment objective; no
LLM runs while it trains, so a step costs microseconds, not seconds, and
any number of epochs or any candidate set is affordable.

Rows: validation NDCG@10 / HR@100 on the split RARecommender validates on,
and test NDCG@10 / HR@100 (full catalogue, training items excluded), for
the fitted towers alone and with each head, beside popularity and SASRec.

Results: benchmarks/results/output_head.json (ML-100K) or output_head_<data folder>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from common import DATASET_TITLES, cached_prompt_states, dataset_suffix, read_dataset, results_json, write_section
from objective_probe import BATCH, lr_decay, sampled_log_q
from objective_study import (BASE, DEFAULT_OBJECTIVE, HERE, PROMPT_CACHE, mean_and_per_user, reference_rows,
                             shared_sasrec, user_subset)

from rarec import RARecommender
from rarec.align import (all_next_item_samples, distillation_loss, select_alignment_samples,
                         select_random_samples)
from rarec.data import ItemTextTable
from rarec.metrics import full_ranking_metrics, paired_difference
from rarec.model_selection import leave_last_out

#: name -> (candidates, epochs, lr, schedule, distill[, options]): "sampled" is the estimator's default candidate
#: set (the batch's targets + 64 random items, logQ-corrected), "full" every item of the catalogue. Options:
#: "text_weight" makes the teacher SASRec's logits plus that weight times the TF-IDF cosine of the sample's history
#: and each candidate, in units of SASRec's score spread (objective_study's hybrid teacher); "temperature" divides
#: SASRec's logits; "mlp" adds to each linear head a residual MLP with that many hidden units (GELU, last layer
#: zero at the start, so step 0 is still the fitted model); "samples" trains on that fraction of the fit's samples
#: (a seeded draw, the same for every head seed) to read how the heads' quality moves with their data.
HEADS = {
    "sampled, 3 epochs, lr 1e-3": ("sampled", 3, 1e-3, "constant", 0.9),
    "sampled, 3 epochs, lr 1e-3, cosine decay": ("sampled", 3, 1e-3, "cosine", 0.9),
    "sampled, 10 epochs, lr 1e-3, cosine decay": ("sampled", 10, 1e-3, "cosine", 0.9),
    "sampled, 10 epochs, lr 1e-4, cosine decay": ("sampled", 10, 1e-4, "cosine", 0.9),
    "sampled, 30 epochs, lr 1e-4, cosine decay": ("sampled", 30, 1e-4, "cosine", 0.9),
    "full softmax, 3 epochs, lr 1e-3, cosine decay": ("full", 3, 1e-3, "cosine", 0.9),
    "full softmax, 10 epochs, lr 1e-3, cosine decay": ("full", 10, 1e-3, "cosine", 0.9),
    "full softmax, 10 epochs, lr 1e-4, cosine decay": ("full", 10, 1e-4, "cosine", 0.9),
    "full softmax, 10 epochs, lr 1e-3, cosine decay, distill 0.5": ("full", 10, 1e-3, "cosine", 0.5),
    "sampled, 30 epochs, lr 1e-4, cosine decay, hybrid teacher 0.25": ("sampled", 30, 1e-4, "cosine", 0.9,
                                                                       {"text_weight": 0.25}),
    "sampled, 30 epochs, lr 1e-4, cosine decay, teacher T 2": ("sampled", 30, 1e-4, "cosine", 0.9,
                                                              {"temperature": 2.0}),
    "sampled, 30 epochs, lr 1e-4, cosine decay, + residual MLP 1024": ("sampled", 30, 1e-4, "cosine", 0.9,
                                                                       {"mlp": 1024}),
    "sampled, 30 epochs, lr 1e-4, cosine decay, half the samples": ("sampled", 30, 1e-4, "cosine", 0.9,
                                                                    {"samples": 0.5}),
    "sampled, 60 epochs, lr 1e-4, cosine decay, half the samples": ("sampled", 60, 1e-4, "cosine", 0.9,
                                                                    {"samples": 0.5}),
    "sampled, 30 epochs, lr 1e-4, cosine decay, + residual MLP 1024, half the samples": (
        "sampled", 30, 1e-4, "cosine", 0.9, {"mlp": 1024, "samples": 0.5}),
    # session 16: the default fit sits at the 30-minute budget; can the MLP heads train for less?
    "sampled, 15 epochs, lr 1e-4, cosine decay, + residual MLP 1024": ("sampled", 15, 1e-4, "cosine", 0.9,
                                                                       {"mlp": 1024}),
    "sampled, 30 epochs, lr 1e-4, cosine decay, + residual MLP 256": ("sampled", 30, 1e-4, "cosine", 0.9,
                                                                      {"mlp": 256}),
    # session 20: fused without training, SASRec + 0.25 x EASE ranks far above SASRec (validation NDCG@10 0.1294
    # against 0.1161), but an end-to-end fit distilled from it did not follow (0.1169). Is the user tower short of
    # what EASE reads, the whole history? "pool" gives the user head the mean LLM item vector of that history too.
    "sampled, 30 epochs, lr 1e-4, cosine decay, EASE teacher 0.25": ("sampled", 30, 1e-4, "cosine", 0.9,
                                                                     {"ease_weight": 0.25}),
    "sampled, 30 epochs, lr 1e-4, cosine decay, pooled history": ("sampled", 30, 1e-4, "cosine", 0.9,
                                                                  {"pool": True}),
    "sampled, 30 epochs, lr 1e-4, cosine decay, pooled history, EASE teacher 0.25": (
        "sampled", 30, 1e-4, "cosine", 0.9, {"pool": True, "ease_weight": 0.25}),
    "sampled, 30 epochs, lr 1e-4, cosine decay, + residual MLP 1024, pooled history, EASE teacher 0.25": (
        "sampled", 30, 1e-4, "cosine", 0.9, {"mlp": 1024, "pool": True, "ease_weight": 0.25}),
    "sampled, 30 epochs, lr 1e-4, cosine decay, + residual MLP 1024, pooled history": (
        "sampled", 30, 1e-4, "cosine", 0.9, {"mlp": 1024, "pool": True}),
    "sampled, 30 epochs, lr 1e-4, cosine decay, + residual MLP 1024, pooled history, EASE teacher 0.5": (
        "sampled", 30, 1e-4, "cosine", 0.9, {"mlp": 1024, "pool": True, "ease_weight": 0.5}),
    # the same with the history's mean CF item embedding (the backbone's, 64 wide) instead of the LLM's item vectors
    "sampled, 30 epochs, lr 1e-4, cosine decay, + residual MLP 1024, pooled CF history, EASE teacher 0.25": (
        "sampled", 30, 1e-4, "cosine", 0.9, {"mlp": 1024, "pool": "cf", "ease_weight": 0.25}),
}


class Head(torch.nn.Module):
    """A linear map of one tower's vectors that starts as the identity, optionally followed by a residual MLP
    (``mlp`` hidden units) whose last layer starts at zero. With ``pool`` it also adds a linear map (zero at the
    start) of a second input, the mean of the LLM's item vectors over the user's whole history."""

    def __init__(self, width: int, mlp: int = 0, pool: int = 0) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(width, width)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(width))
            self.linear.bias.zero_()
        self.pool = None
        if pool:  # the pooled vectors' width
            self.pool = torch.nn.Linear(pool, width, bias=False)
            torch.nn.init.zeros_(self.pool.weight)
        self.mlp = None
        if mlp:
            self.mlp = torch.nn.Sequential(torch.nn.Linear(width, mlp), torch.nn.GELU(), torch.nn.Linear(mlp, width))
            torch.nn.init.zeros_(self.mlp[2].weight)
            torch.nn.init.zeros_(self.mlp[2].bias)

    def forward(self, x: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        x = self.linear(x)
        if self.pool is not None:
            x = x + self.pool(pooled)
        return x if self.mlp is None else x + self.mlp(x)


def train_heads(user_vectors, targets, item_vectors, teacher_users, teacher_items, candidates, epochs, lr,
                schedule, distill, seed, extras=64, extra_teacher=None, temperature=1.0, mlp=0, user_pooled=None):
    """User and item heads trained on fixed vectors (samples' users, whole catalogue) with the alignment objective;
    ``extra_teacher(rows, items)`` is added to the teacher's logits when given; with ``user_pooled`` (one vector
    per sample: its history's mean item vector) the user head also reads it."""
    generator = torch.Generator().manual_seed(seed)
    n_items, width = item_vectors.shape
    scale = width ** -0.5
    with torch.random.fork_rng():  # the MLP's first layers are drawn from the head seed (session 16; before, unseeded)
        torch.manual_seed(seed)
        pool = 0 if user_pooled is None else user_pooled.shape[1]
        user_head, item_head = Head(width, mlp, pool=pool), Head(width, mlp)
    optimizer = torch.optim.Adam([*user_head.parameters(), *item_head.parameters()], lr=lr)
    decay = lr_decay(optimizer, schedule, epochs * -(-len(targets) // BATCH))
    log_q = sampled_log_q(targets, n_items, extras)
    for _ in range(epochs):
        for rows in torch.randperm(len(targets), generator=generator).split(BATCH):
            target = targets[rows]
            if candidates == "full":
                items, positive = torch.arange(n_items), target
            else:
                extra = torch.randint(0, n_items, (extras,), generator=generator)
                items, positive = torch.unique(torch.cat([target, extra]), return_inverse=True)
                positive = positive[: len(target)]
            pooled = None if user_pooled is None else user_pooled[rows]
            scores = user_head(user_vectors[rows], pooled) @ item_head(item_vectors[items]).T * scale
            teacher = teacher_users[rows] @ teacher_items[items].T / temperature
            if extra_teacher is not None:
                teacher = teacher + extra_teacher(rows, items)
            if candidates == "sampled":
                scores, teacher = scores - log_q[items], teacher - log_q[items]
            loss = torch.nn.functional.cross_entropy(scores, positive)
            if distill:
                loss = (1 - distill) * loss + distill * distillation_loss(scores, teacher, 1.0)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([*user_head.parameters(), *item_head.parameters()], 1.0)
            optimizer.step()
            decay.step()
    return user_head.eval(), item_head.eval()


def text_teacher(vectors: dict, texts, weight: float, n_probe: int = 1000):
    """``extra(rows, items)``: weight x the TF-IDF cosine of each sample's history and each item, scaled so that one
    unit is the spread of SASRec's scores over the catalogue (mean per-sample std of ``n_probe`` samples)."""
    import scipy.sparse as sp

    from cold_items import tfidf_items, tfidf_users

    items = tfidf_items(texts)
    flat, offsets = vectors["history_items"].numpy(), vectors["history_offsets"].numpy()
    histories = sp.csr_matrix((np.ones(len(flat), dtype=np.float32), flat, offsets),
                              shape=(len(offsets) - 1, items.shape[0]))
    users = tfidf_users(histories, items)
    probe = np.random.default_rng(0).permutation(len(offsets) - 1)[:n_probe]
    cf = vectors["teacher_samples"][probe] @ vectors["teacher_items"].T
    scale = weight * float(cf.std(1).mean()) / float((users[probe] @ items.T).toarray().std(1).mean())
    return lambda rows, columns: torch.as_tensor((users[rows.numpy()] @ items[columns.numpy()].T).toarray() * scale,
                                                 dtype=torch.float32)


def full_histories(vectors: dict, sequences) -> list[np.ndarray]:
    """Each training sample's whole history (its user's items before the target), not the prompt's window."""
    return [sequences[u][:e] for u, e in zip(vectors["sample_users"].tolist(), vectors["sample_ends"].tolist())]


def pooled(histories, item_vectors: torch.Tensor) -> torch.Tensor:
    """The mean of ``item_vectors`` over each history's distinct items (zeros for an empty history), as the
    estimator's ``history_pooling`` computes it."""
    from rarec.cf import history_matrix

    rows = history_matrix([np.asarray(h) for h in histories], item_vectors.shape[0], mean=True)
    return torch.as_tensor(rows @ item_vectors.numpy())


def ease_extra(vectors: dict, sequences, weight: float):
    """``extra(rows, items)``: the estimator's co-occurrence teacher (weight x the EASE score of each sample's whole
    history, EASE fitted on the fit's training sequences, in units of SASRec's score spread) on the cached samples."""
    from rarec.align import AlignmentSamples
    from rarec.align._cooccurrence_teacher import cooccurrence_teacher

    samples = AlignmentSamples(*(vectors[k].numpy() for k in ("sample_users", "sample_ends", "targets")))
    backbone = lambda rows: vectors["teacher_samples"][rows] @ vectors["teacher_items"].T  # noqa: E731
    return cooccurrence_teacher(weight, sequences, samples, backbone, vectors["items"].shape[0])


def ranking(user_vectors, item_vectors, valid, valid_train, test, test_train) -> dict:
    """Validation NDCG@10 / HR@100, and test NDCG@10 / HR@100 with their per-user values (by user id, as
    objective_study keeps them) for a paired comparison with the backbone."""
    def metrics(vectors, split_test, split_train):
        found = full_ranking_metrics(lambda u: vectors[u] @ item_vectors.T, split_test, split_train, ks=[10, 100],
                                     metrics=["ndcg", "hr"], per_user=True)
        found["users"] = split_test.users.ids[found["users"]]
        return mean_and_per_user(found)
    valid_found = metrics(user_vectors["valid"], valid, valid_train)
    test_found = metrics(user_vectors["test"], test, test_train)
    return {"valid_ndcg@10": valid_found["ndcg@10"], "valid_hr@100": valid_found["hr@100"],
            "ndcg@10": test_found["ndcg@10"], "hr@100": test_found["hr@100"], "per_user": test_found["per_user"]}


def fitted_vectors(data: Path, n_users: int | None, seed: int) -> tuple[dict, object, object]:
    """The default fit's vectors (cached under benchmarks/output/): catalogue, samples, validation and test users."""
    log, text = read_dataset(data)
    texts = ItemTextTable.from_any(text).align(log.items, on_unknown="raise")
    split = leave_last_out(log, n_valid=0)
    suffix = dataset_suffix(data)
    backbone = shared_sasrec(split.train, HERE / "output" / f"objective_study_sasrec{suffix}")
    n_users = min(n_users or log.n_users, log.n_users)
    part = user_subset(split, n_users)
    cache = HERE / "output" / f"output_head{suffix}_seed{seed}.pt"
    if cache.exists():
        return torch.load(cache), backbone, (split, part), texts
    params = {**BASE, **DEFAULT_OBJECTIVE}
    params["sample_fraction"] = min(1.0, params["sample_fraction"] * log.n_users / n_users)
    rec = RARecommender(backbone=backbone, device="cpu", random_state=seed, verbose=0, **params)
    start = time.perf_counter()
    with cached_prompt_states(PROMPT_CACHE):
        rec.fit(part.train, item_text=text)
    fit_s = time.perf_counter() - start
    towers = rec.towers_
    inner = leave_last_out(part.train, n_valid=0)  # the split the fit validated on
    sequences = inner.train.user_sequences()
    # the fit's own selection: its rng is seeded with random_state and draws the samples first
    rng = np.random.default_rng(seed)
    samples, _ = select_alignment_samples(all_next_item_samples(sequences), sequences, towers.texts,
                                          params["sample_fraction"], rng)
    samples = select_random_samples(samples, rec.max_train_samples, rng)
    histories = [towers.window(sequences[u][:e]) for u, e in zip(samples.users, samples.ends)]
    start = time.perf_counter()
    sample_vectors = towers.encode_users(histories, samples.users)
    valid_users = np.unique(inner.test.user_codes)
    valid_vectors = torch.zeros(inner.train.n_users, sample_vectors.shape[1])
    valid_vectors[valid_users] = towers.encode_users([sequences[u] for u in valid_users], valid_users)
    encode_s = time.perf_counter() - start
    teacher_valid = torch.zeros(inner.train.n_users, towers.item_cf.shape[2])
    teacher_valid[valid_users] = towers.user_cf([towers.window(sequences[u]) for u in valid_users], valid_users)[:, 0]
    test_sequences = part.train.user_sequences()
    test_users = np.flatnonzero(part.train.user_lengths() > 0)
    teacher_test = torch.zeros(part.train.n_users, towers.item_cf.shape[2])
    teacher_test[test_users] = towers.user_cf([towers.window(test_sequences[u]) for u in test_users], test_users)[:, 0]
    vectors = {"items": rec.item_vectors_, "test_users": rec.user_vectors_, "valid_users": valid_vectors,
               "samples": sample_vectors, "targets": torch.as_tensor(samples.targets),
               "teacher_samples": towers.user_cf(histories, samples.users)[:, 0],
               "teacher_items": towers.item_cf[:, 0], "teacher_valid": teacher_valid, "teacher_test": teacher_test,
               "history_items": torch.as_tensor(np.concatenate(histories)),
               "history_offsets": torch.as_tensor(np.cumsum([0, *map(len, histories)])),
               "sample_users": torch.as_tensor(samples.users), "sample_ends": torch.as_tensor(samples.ends),
               "fit_s": fit_s, "encode_s": encode_s, "n_users": n_users}
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(vectors, cache)
    return vectors, backbone, (split, part), texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/ml-100k")
    parser.add_argument("--users", type=int, default=None, help="the objective study's CPU preset for large data")
    parser.add_argument("--seed", type=int, default=0, help="of the RA-Rec fit")
    parser.add_argument("--head-seeds", default="0,1,2")
    parser.add_argument("--heads", default=";".join(HEADS), help="names of HEADS separated by semicolons")
    parser.add_argument("--render", action="store_true")
    parser.add_argument("--output", type=Path, default=HERE.parent / "docs/benchmarks.md")
    parser.add_argument("--results", type=Path, default=None,
                        help="results file (default results/output_head[_<data>].json); session 20's rows, from a "
                             "new fit of the cached vectors, are in results/output_head_session20.json")
    args = parser.parse_args()
    suffix = dataset_suffix(args.data)
    results = args.results or HERE / "results" / f"output_head{suffix}.json"
    if not args.render:
        vectors, backbone, (split, part), texts = fitted_vectors(args.data, args.users, args.seed)
        inner = leave_last_out(part.train, n_valid=0)
        users = {"valid": vectors["valid_users"], "test": vectors["test_users"]}
        evaluate = lambda u, i: ranking(u, i, inner.test, inner.train, part.test, part.train)  # noqa: E731
        result = json.loads(results.read_text()) if results.exists() else {"rows": []}
        result.update(dataset=args.data.name, users=vectors["n_users"], fit_seed=args.seed,
                      fit_s=vectors["fit_s"], encode_s=vectors["encode_s"], samples=len(vectors["targets"]),
                      machine=f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
                      reference=reference_rows(backbone, split, part))
        inner_sequences, pooled_users = inner.train.user_sequences(), {}
        teacher = {"valid": vectors["teacher_valid"], "test": vectors["teacher_test"]}
        result["teacher_check"] = evaluate(teacher, vectors["teacher_items"])
        result["towers"] = evaluate(users, vectors["items"])
        print(json.dumps({"towers valid NDCG@10": result["towers"]["valid_ndcg@10"],
                          "teacher valid NDCG@10": result["teacher_check"]["valid_ndcg@10"]}), flush=True)
        for name in args.heads.split(";"):
            for head_seed in map(int, args.head_seeds.split(",")):
                settings = HEADS[name]
                options = settings[5] if len(settings) > 5 else {}
                text_weight = options.get("text_weight")
                if text_weight is not None and "history_items" not in vectors:
                    print(f"skipped {name!r}: the cached vectors predate the saved histories", flush=True)
                    break
                if ("ease_weight" in options or "pool" in options) and "sample_users" not in vectors:
                    print(f"skipped {name!r}: the cached vectors predate the saved sample users", flush=True)
                    break
                text = None if text_weight is None else text_teacher(vectors, texts, text_weight)
                if "ease_weight" in options:
                    text = ease_extra(vectors, inner_sequences, options["ease_weight"])
                keep = torch.randperm(len(vectors["targets"]), generator=torch.Generator().manual_seed(0))
                keep = keep[: round(options.get("samples", 1.0) * len(keep))].sort().values
                extra = None if text is None else (lambda rows, items, text=text, keep=keep: text(keep[rows], items))
                pool = options.get("pool", False)  # True: the LLM's item vectors; "cf": the CF item embeddings
                if pool and pool not in pooled_users:
                    basis = vectors["teacher_items"] if pool == "cf" else vectors["items"]
                    pooled_users[pool] = {"samples": pooled(full_histories(vectors, inner_sequences), basis),
                                          "valid": pooled(inner_sequences, basis),
                                          "test": pooled(part.train.user_sequences(), basis)}
                start = time.perf_counter()
                user_head, item_head = train_heads(vectors["samples"][keep], vectors["targets"][keep], vectors["items"],
                                                   vectors["teacher_samples"][keep], vectors["teacher_items"],
                                                   *settings[:5], seed=head_seed, extra_teacher=extra,
                                                   temperature=options.get("temperature", 1.0),
                                                   mlp=options.get("mlp", 0),
                                                   user_pooled=pooled_users[pool]["samples"][keep] if pool else None)
                train_s = time.perf_counter() - start
                with torch.no_grad():
                    found = evaluate({k: user_head(v, pooled_users[pool][k] if pool else None)
                                      for k, v in users.items()},
                                     item_head(vectors["items"]))
                row = {"head": name, "seed": head_seed, "train_s": train_s, **found}
                result["rows"] = [r for r in result["rows"] if (r["head"], r["seed"]) != (name, head_seed)] + [row]
                print(json.dumps({k: v for k, v in row.items() if k != "per_user"}), flush=True)
                results.parent.mkdir(parents=True, exist_ok=True)
                results.write_text(results_json(result))
    write_section(args.output, render(json.loads(results.read_text())), marker="output-head" + suffix.replace("_", "-"))


def render(result: dict) -> str:
    import statistics

    def cell(values):
        return f"{values[0]:.4f}" if len(values) == 1 else f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"

    title = DATASET_TITLES.get(result["dataset"], result["dataset"])
    lines = [f"## A linear head on the towers' output ({title}, SmolLM2-135M, CPU)", "",
             f"Written by `benchmarks/output_head.py` on {result['machine']}. One default RA-Rec fit (seed "
             f"{result['fit_seed']}, {result['users']:,} users, {result['samples']:,} training samples; the fit took "
             f"{result['fit_s']:.0f} s, encoding its samples' and validation users' prompts once more "
             f"{result['encode_s']:.0f} s). Each head row: a 576 x 576 linear map per tower, starting at the "
             "identity (\"+ residual MLP\": then a residual MLP whose last layer starts at zero; \"half the "
             "samples\": trained on a seeded half of the fit's samples), trained on those fixed vectors; mean ± "
             "std over head seeds.", "",
             "Paired Δ: RA-Rec − SASRec test NDCG@10 per user (the head seeds averaged per user first), mean ± one "
             "standard error; within about two standard errors is noise.", "",
             "| towers | seeds | valid NDCG@10 | valid HR@100 | test NDCG@10 | test HR@100 | paired Δ test NDCG@10 "
             "| head training (s) |",
             "|---|---|---|---|---|---|---|---|"]
    ref = result["reference"]
    for name in ("popularity", "SASRec backbone"):
        lines.append(f"| {name} | – | {ref[name]['valid_ndcg@10']:.4f} | – | {ref[name]['ndcg@10']:.4f} | "
                     f"{ref[name]['hr@100']:.4f} | – | – |")
    backbone = ref["SASRec backbone"].get("per_user")

    def paired(rows):
        if backbone is None or not all("per_user" in r for r in rows):
            return "–"
        found = paired_difference([r["per_user"] for r in rows], backbone)
        return f"{found['mean_difference']:+.4f} ± {found['standard_error']:.4f}"

    t = result["towers"]
    lines.append(f"| RA-Rec towers, no head | – | {t['valid_ndcg@10']:.4f} | {t['valid_hr@100']:.4f} | "
                 f"{t['ndcg@10']:.4f} | {t['hr@100']:.4f} | {paired([t])} | – |")
    for name in dict.fromkeys(r["head"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["head"] == name]
        lines.append(f"| + head: {name} | {len(rows)} | " + " | ".join(
            cell([r[k] for r in rows]) for k in ("valid_ndcg@10", "valid_hr@100", "ndcg@10", "hr@100"))
            + f" | {paired(rows)} | {statistics.mean(r['train_s'] for r in rows):.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
