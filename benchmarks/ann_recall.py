"""Approximate retrieval (retrieval="ivf") against exact top-k on 1,000,000 synthetic item vectors.

    python benchmarks/ann_recall.py                  # the issue's size, ~10 min on 2 CPU cores
    python benchmarks/ann_recall.py --items 100000 --json /tmp/ann.json   # a quick look
    python benchmarks/ann_recall.py --render         # docs section from the saved JSON
    python benchmarks/ann_recall.py --layouts "" --model MODEL_DIR --probes 1,2,4,8,16 --json /tmp/m.json
                                                     # a saved model's own vectors

Runs what ``RARecommender.recommend`` runs once the user vectors are known:
exact (``rarec._topk.top_k``, the default, within ``ranking_memory_mb=1024``)
and the IVF index (``rarec._ann.IVFIndex``), each with 20 seen items excluded
per user, top 100. Reports recall@100 of the index against exact search for
several ``ivf_probe`` values, the wall time of each, the speed-up and the
one-off cost of building the index.

The vectors are synthetic, of SmolLM2-135M's width (576), in two layouts:

* ``clustered`` (the headline): items drawn around 2,000 centres of uneven
  size, with per-item norms that vary; users are averages of a few items of
  one or two clusters. Real item-tower vectors are structured (docs: the
  vector diagnostics measured an effective rank of 11 on MovieLens), which
  is what an inverted file exploits.
* ``gaussian`` (the worst case): isotropic random vectors, no structure at
  all. An IVF index has nothing to exploit there and needs many probes.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import write_section

from rarec._ann import IVFIndex
from rarec._topk import top_k

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "ann_recall.json"
TARGET = 0.99


def make_vectors(layout: str, n_items: int, n_users: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    if layout == "gaussian":
        return torch.randn(n_items, dim, generator=gen), torch.randn(n_users, dim, generator=gen)
    n_clusters = 2000
    sizes = torch.from_numpy(np.random.default_rng(seed).dirichlet(np.full(n_clusters, 0.5)))  # uneven clusters
    cluster = torch.multinomial(sizes, n_items, replacement=True, generator=gen)
    centres = torch.randn(n_clusters, dim, generator=gen)
    items = torch.empty(n_items, dim)
    for start in range(0, n_items, 100_000):  # in slices: the noise of 1M x 576 at once would double the memory
        part = slice(start, min(start + 100_000, n_items))
        items[part] = centres[cluster[part]] + 0.7 * torch.randn(part.stop - part.start, dim, generator=gen)
    items *= torch.exp(0.2 * torch.randn(n_items, 1, generator=gen))  # norms vary, as popular items' do
    # users: the mean of 3 items of one cluster and 1 of another, plus noise
    picks = torch.randint(0, n_items, (n_users, 4), generator=gen)
    home = cluster[picks[:, 0]]
    order = torch.argsort(cluster)
    size = torch.bincount(cluster, minlength=n_clusters)
    first = torch.cumsum(size, 0) - size  # where each cluster starts in ``order``
    offsets = (torch.rand(n_users, 2, generator=gen) * size[home, None]).long()
    picks[:, 1:3] = order[first[home, None] + offsets]  # two more items of the first item's cluster
    users = items[picks].mean(1) + 0.3 * torch.randn(n_users, dim, generator=gen)
    return items, users


def _recall(found: np.ndarray, exact: np.ndarray, k: int) -> float:
    return float(np.mean([np.intersect1d(f[f >= 0], e).size / k for f, e in zip(found, exact)]))


def probe_rows(search, probes: list[int], exact: np.ndarray, k: int, exact_seconds: float, label: str) -> list[dict]:
    """Recall, wall time and speed-up of ``search(n_probe) -> found ids (n_users, k)`` for each probe count."""
    rows = []
    for n_probe in probes:
        start = time.perf_counter()
        found = search(n_probe)
        seconds = time.perf_counter() - start
        recall = _recall(found, exact, k)
        rows.append({"ivf_probe": n_probe, "recall": recall, "seconds": seconds,
                     "users_per_s": len(exact) / seconds, "speed_up": exact_seconds / seconds})
        print(f"{label}: probe {n_probe}: recall@{k} {recall:.4f}, {seconds:.2f} s "
              f"({exact_seconds / seconds:.1f}x exact)", file=sys.stderr)
    return rows


def faiss_rows(items: torch.Tensor, users: torch.Tensor, exact: np.ndarray, exclude: list, k: int, n_lists: int,
               probes: list[int], exact_seconds: float) -> dict:
    """The same search with faiss' IndexIVFFlat (inner product), for comparison; exclusions by over-fetching."""
    import faiss

    x = items.numpy()
    quantizer = faiss.IndexFlatIP(x.shape[1])
    index = faiss.IndexIVFFlat(quantizer, x.shape[1], n_lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.max_points_per_centroid = 64
    start = time.perf_counter()
    index.train(x)
    index.add(x)
    build = time.perf_counter() - start
    fetch = k + max(len(e) for e in exclude)

    def search(n_probe):
        index.nprobe = n_probe
        _, ids = index.search(users.numpy(), fetch)
        return np.stack([row[~np.isin(row, seen)][:k] for row, seen in zip(ids, exclude)])

    rows = probe_rows(search, probes, exact, k, exact_seconds, "faiss")
    return {"version": faiss.__version__, "build_seconds": build, "probes": rows}


def measure(layout: str, n_items: int, n_users: int, dim: int, k: int, seen: int, probes: list[int],
            n_lists: int | None, seed: int, with_faiss: bool) -> dict:
    """One synthetic layout: random vectors, ``seen`` random items excluded per user."""
    items, users = make_vectors(layout, n_items, n_users, dim, seed)
    rng = np.random.default_rng(seed)
    exclude = [rng.choice(n_items, seen, replace=False) for _ in range(n_users)]
    return {"layout": layout, "seen_per_user": seen,
            **compare(items, users, exclude, k, probes, n_lists, seed, with_faiss, layout)}


def measure_model(path: Path, k: int, probes: list[int], n_lists: int | None, seed: int, with_faiss: bool) -> dict:
    """A saved RARecommender's own vectors: its users against its catalogue, each user's seen items excluded."""
    from rarec import RARecommender

    rec = RARecommender.load(path)
    exclude = [rec.seen_.indices[rec.seen_.indptr[u]:rec.seen_.indptr[u + 1]] for u in range(rec.n_users_)]
    k = min(k, rec.n_items_ - max(len(e) for e in exclude))
    return {"layout": "model", "source": path.name, "seen_per_user": float(np.mean([len(e) for e in exclude])),
            **compare(rec.item_vectors_, rec.user_vectors_, exclude, k, probes, n_lists, seed, with_faiss, "model")}


def compare(items: torch.Tensor, users: torch.Tensor, exclude: list, k: int, probes: list[int], n_lists: int | None,
            seed: int, with_faiss: bool, layout: str) -> dict:
    """Exact top-k against the IVF index (and faiss) on the same vectors and exclusions."""
    n_items, n_users, dim = len(items), len(users), items.shape[1]
    start = time.perf_counter()
    _, exact = top_k(lambda rows, cols: users[rows] @ items[cols].T, n_users, n_items, k, exclude, 1024)
    exact_seconds = time.perf_counter() - start
    start = time.perf_counter()
    index = IVFIndex(items, n_lists, seed=seed)
    build_seconds = time.perf_counter() - start
    rows = probe_rows(lambda n_probe: index.search(users, k, n_probe, exclude)[1].numpy(), probes, exact.numpy(), k,
                      exact_seconds, layout)
    result = {"items": n_items, "users": n_users, "dim": dim, "k": k, "n_lists": index.n_lists,
              "build_seconds": build_seconds, "exact_seconds": exact_seconds,
              "exact_users_per_s": n_users / exact_seconds, "probes": rows}
    if with_faiss:
        del index  # its copy of the vectors
        result["faiss"] = faiss_rows(items, users, exact.numpy(), exclude, k, result["n_lists"], probes, exact_seconds)
    return result


def to_markdown(result: dict) -> str:
    lines = ["## Approximate retrieval: recall@100 and speed-up on 1,000,000 item vectors", "",
             "Reproduce: `python benchmarks/ann_recall.py` (then `--render`). What `recommend` runs once the user "
             "vectors are known: exact top-k (`retrieval=\"exact\"`, the default, `ranking_memory_mb=1024`) and the "
             "IVF index (`retrieval=\"ivf\"`: rarec's own, in torch; spherical k-means lists, inner product), "
             "both excluding "
             f"{result['runs'][0]['seen_per_user']} seen items per user. Synthetic fp32 vectors of width "
             f"{result['runs'][0]['dim']}; {result['machine']}. Recall@100 is the share of the exact top 100 that "
             "the index returns; the index never reorders what it finds (same inner products). The estimator's default "
             "is `ivf_probe=64`.", ""]
    for r in result["runs"]:
        good = [p for p in r["probes"] if p["recall"] >= TARGET]
        what = {"clustered": "2,000 clusters of uneven size: the headline",
                "gaussian": "isotropic Gaussian: the worst case"}.get(
            r["layout"], f"the item and user vectors of a fitted RA-Rec model ({r.get('source')}), each user's "
                         f"seen items excluded (mean {r['seen_per_user']:.0f}), top {r['k']}")
        lines += [f"**{r['layout']}** ({what}); "
                  f"{r['items']:,} items, {r['users']:,} users, {r['n_lists']:,} lists; index built in "
                  f"{r['build_seconds']:.0f} s (once; not saved with the model); exact search "
                  f"{r['exact_seconds']:.1f} s ({r['exact_users_per_s']:,.0f} users/s).", "",
                  "| ivf_probe | recall@100 | wall time | users/s | speed-up over exact |", "|---|---|---|---|---|"]
        lines += [f"| {p['ivf_probe']} | {p['recall']:.4f} | {p['seconds']:.2f} s | {p['users_per_s']:,.0f} | "
                  f"{p['speed_up']:.1f}× |" for p in r["probes"]]
        if "faiss" in r:
            f = r["faiss"]
            lines[-len(r["probes"]) - 2:] = [
                "| ivf_probe | recall@100 | wall time | users/s | speed-up over exact | faiss recall@100 | "
                "faiss wall time |",
                "|---|---|---|---|---|---|---|"] + [
                f"| {p['ivf_probe']} | {p['recall']:.4f} | {p['seconds']:.2f} s | {p['users_per_s']:,.0f} | "
                f"{p['speed_up']:.1f}× | {q['recall']:.4f} | {q['seconds']:.2f} s |"
                for p, q in zip(r["probes"], f["probes"])]
            lines += ["", f"faiss {f['version']} `IndexIVFFlat` with the same number of lists, built in "
                          f"{f['build_seconds']:.0f} s, for comparison (`--faiss`)."]
        if good:
            best = max(good, key=lambda p: p["speed_up"])
            lines += ["", f"Target recall@100 ≥ {TARGET}: **met** at ivf_probe={best['ivf_probe']} "
                          f"(recall {best['recall']:.4f}), {best['speed_up']:.1f}× faster than exact."]
        else:
            lines += ["", f"Target recall@100 ≥ {TARGET}: **not met** at any ivf_probe tried."]
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("-k", type=int, default=100)
    parser.add_argument("--seen", type=int, default=20)
    parser.add_argument("--probes", default="8,16,32,64,128,256")
    parser.add_argument("--lists", type=int, help="ivf_lists [default: 4 sqrt(items)]")
    parser.add_argument("--layouts", default="clustered,gaussian", help="synthetic layouts ('' for none)")
    parser.add_argument("--model", type=Path, help="also measure a saved RARecommender's own vectors")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--faiss", action="store_true",
                        help="also time faiss' IndexIVFFlat on the same vectors (pip install faiss-cpu)")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--output", type=Path, default=HERE.parent / "docs/benchmarks.md")
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args()
    if not args.render:
        probes = [int(p) for p in args.probes.split(",")]
        runs = [measure(layout, args.items, args.users, args.dim, args.k, args.seen, probes, args.lists, args.seed,
                        args.faiss) for layout in args.layouts.split(",") if layout]
        if args.model is not None:
            runs.append(measure_model(args.model, args.k, probes, args.lists, args.seed, args.faiss))
        result = {"runs": runs,
                  "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"}
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        if args.json != RESULTS:
            print(to_markdown(result))
            return
    write_section(args.output, to_markdown(json.loads(RESULTS.read_text())), marker="ann-recall")


if __name__ == "__main__":
    main()
