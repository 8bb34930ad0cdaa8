"""Where does the LLM score lose to its backbone? The paired comparison split by the length of each user's history.

    python benchmarks/paired_by_history.py            # ML-100K, the default's rows of objective_study.json
    python benchmarks/paired_by_history.py --variant "default + MLP heads (256)" --groups 2

Reads the per-user test metrics that ``objective_study.py`` keeps for each
RA-Rec row and for SASRec, and the data set's split (the one the study
tests on: each user's last interaction). Users are grouped by how many
training interactions they have (quantiles, so the groups are of nearly
equal size); in each group the RA-Rec seeds are averaged per user and
compared with SASRec user by user (``rarec.metrics.paired_difference``).
Nothing is fitted: it runs in seconds.

The groups are a post-hoc look at results already measured: a gap of two
standard errors in one of four groups is weaker evidence than the same gap
in a comparison decided before looking.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from common import DATASET_TITLES, dataset_suffix, read_dataset, write_section

from rarec.metrics import paired_difference
from rarec.model_selection import leave_last_out

HERE = Path(__file__).resolve().parent
DEFAULT_VARIANT = "default + output heads with a residual MLP (1024)"
METRICS = ("ndcg@10", "hr@100")


def quantile_groups(lengths: np.ndarray, n_groups: int) -> np.ndarray:
    """Each user's group (0 = shortest histories): ``n_groups`` quantile bins of ``lengths`` (a user whose length
    equals an inner edge goes to the group above it), numbered without the bins that tied edges leave empty."""
    edges = np.quantile(lengths, np.linspace(0, 1, n_groups + 1))
    bins = np.searchsorted(edges[1:-1], lengths, side="right")
    return np.unique(bins, return_inverse=True)[1]


def paired_by_group(runs: list[dict], reference: dict, groups: np.ndarray) -> list[dict]:
    """Per group: its users and, for each metric, RA-Rec − reference per user (seeds averaged per user first)."""
    def part(per_user: dict, mask: np.ndarray) -> dict:
        return {key: np.asarray(values)[mask] for key, values in per_user.items()}

    out = []
    for group in range(int(groups.max()) + 1):
        mask = groups == group
        out.append({"users": int(mask.sum()), **{metric: paired_difference([part(r, mask) for r in runs],
                                                                            part(reference, mask), metric)
                                                 for metric in METRICS}})
    return out


def history_lengths(data: Path, users: list) -> np.ndarray:
    """Training interactions of each of ``users`` (ids) in the study's test split."""
    log, _ = read_dataset(data)
    train = leave_last_out(log, n_valid=0).train
    counts = np.bincount(train.user_codes, minlength=train.n_users)
    return counts[train.users.encode(np.asarray(users))]


def render(title: str, variant: str, seeds: int, lengths: np.ndarray, groups: np.ndarray, table: list[dict]) -> str:
    lines = [f"## Where the LLM score loses: paired with SASRec by history length ({title})", "",
             f"Written by `benchmarks/paired_by_history.py` from `objective_study.py`'s per-user test metrics: RA-Rec "
             f"\"{variant}\" ({seeds} seeds, averaged per user) − SASRec, per user, ± one standard error; users "
             "grouped by their number of training interactions (quantiles). A post-hoc split: read it as a lead, "
             "not a result.", "",
             "| training interactions | users | Δ test NDCG@10 | Δ test HR@100 | users better / worse (NDCG@10) |",
             "|---|---|---|---|---|"]
    for group, row in enumerate(table):
        low, high = lengths[groups == group].min(), lengths[groups == group].max()
        ndcg, hr = row["ndcg@10"], row["hr@100"]
        lines.append(f"| {low}–{high} | {row['users']} | {ndcg['mean_difference']:+.4f} ± "
                     f"{ndcg['standard_error']:.4f} | {hr['mean_difference']:+.4f} ± {hr['standard_error']:.4f} | "
                     f"{ndcg['wins']} / {ndcg['losses']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/ml-100k")
    parser.add_argument("--variant", default=DEFAULT_VARIANT, help="an objective_study.py variant with per-user rows")
    parser.add_argument("--groups", type=int, default=4, help="how many history-length quantile groups")
    parser.add_argument("--output", type=Path, default=HERE.parent / "docs/benchmarks.md")
    args = parser.parse_args()
    result = json.loads((HERE / "results" / f"objective_study{dataset_suffix(args.data)}.json").read_text())
    runs = [r["per_user"] for r in result["rows"] if r["variant"] == args.variant and "per_user" in r]
    reference = result["reference"].get("SASRec backbone", {}).get("per_user")
    if not runs or reference is None:
        raise SystemExit(f"no per-user rows for {args.variant!r} (or for SASRec) in the objective study's results")
    lengths = history_lengths(args.data, reference["users"])
    groups = quantile_groups(lengths, args.groups)
    table = paired_by_group(runs, reference, groups)
    section = render(DATASET_TITLES.get(args.data.name, args.data.name), args.variant, len(runs), lengths, groups,
                     table)
    print(section)
    write_section(args.output, section, marker=f"paired-by-history{dataset_suffix(args.data)}")


if __name__ == "__main__":
    main()
