"""Approximate retrieval (retrieval="ivf"): an IVF index behind recommend/predict."""

import copy
import csv
import io
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rarec import RARecommender
from rarec._ann import IVFIndex, default_n_lists, kmeans
from rarec._topk import top_k
from rarec.cli import main
from rarec.data import make_interactions
from rarec.model_selection import leave_last_out
from rarec.testing import tiny_llm


def _clustered(n, d, n_clusters, seed):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_clusters, d, generator=gen)
    return centres[torch.randint(0, n_clusters, (n,), generator=gen)] + 0.3 * torch.randn(n, d, generator=gen)


def _exact(items, queries, k, exclude=None):
    return top_k(lambda rows, cols: queries[rows] @ items[cols].T, len(queries), len(items), k, exclude)


def test_probing_every_list_is_exact_search_with_exclusions():
    items, queries = _clustered(2000, 16, 20, 0), _clustered(50, 16, 20, 1)
    rng = np.random.default_rng(0)
    exclude = [rng.choice(2000, size=rng.integers(0, 30), replace=False) for _ in range(50)]
    exclude[4] = np.arange(1999)  # one item left: the rest padded
    index = IVFIndex(items, n_lists=16)
    values, indices = index.search(queries, 10, n_probe=16, exclude=exclude, memory_mb=2)  # 5 queries a batch
    exact_values, exact_indices = _exact(items, queries, 10, exclude)
    torch.testing.assert_close(values, exact_values, rtol=1e-5, atol=1e-4)
    finite = torch.isfinite(values)
    assert torch.equal(indices[finite], exact_indices[finite])
    assert finite[4].sum() == 1 and indices[4, 0] == 1999 and (indices[4, 1:] == -1).all()
    for row, seen in enumerate(exclude):
        assert not np.isin(indices[row].numpy(), seen).any()


def test_few_probes_find_most_neighbours_and_recall_grows_with_probes():
    items, queries = _clustered(5000, 16, 50, 2), _clustered(100, 16, 50, 3)
    _, exact = _exact(items, queries, 20)
    index = IVFIndex(items)
    assert index.n_lists == default_n_lists(5000) == 128

    def recall(n_probe):
        _, found = index.search(queries, 20, n_probe)
        return np.mean([len(set(f.tolist()) & set(e.tolist())) / 20 for f, e in zip(found, exact)])

    one, four, sixteen = recall(1), recall(4), recall(16)
    assert 0.2 < one < four < sixteen and sixteen > 0.95  # measured: 0.39, 0.76, 0.98
    assert recall(index.n_lists) == 1.0


def test_the_same_seed_gives_the_same_index():
    items, queries = _clustered(3000, 8, 30, 4), _clustered(40, 8, 30, 5)
    a = IVFIndex(items, seed=3).search(queries, 10, 2)[1]
    b = IVFIndex(items, seed=3).search(queries, 10, 2)[1]
    assert torch.equal(a, b)


@pytest.fixture(scope="module")
def fitted():
    log, text = make_interactions(n_users=60, n_items=40, n_categories=4, random_state=1)
    X = leave_last_out(log, n_valid=0).train.to_array()
    rec = RARecommender(llm=tiny_llm(text), backbone_params=dict(dim=16, n_layers=1, max_len=10, inner_dim=32),
                        cf_epochs=3, epochs=1, max_train_samples=16, batch_size=8, verbose=0,
                        random_state=0).fit(X, item_text=text)
    return rec, X, text


def test_recommend_with_an_index_that_probes_everything_equals_exact(fitted):
    rec, X, _ = fitted
    rec = copy.deepcopy(rec)
    users = np.unique(X[:, 0])
    exact_ids, exact_scores = rec.recommend(users, k=7)
    rec.set_params(retrieval="ivf", ivf_lists=4, ivf_probe=4)
    ids, scores = rec.recommend(users, k=7)
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-5, atol=1e-5)
    assert (ids == exact_ids).mean() > 0.99  # exact ties may order differently
    assert rec._ivf.n_lists == 4
    assert (rec.predict(users[:3])[:, :7] == ids[:3]).all()
    one_ids, _ = rec.recommend(users[0], k=3)  # one user: 1-d
    assert one_ids.shape == (3,)


def test_an_index_with_few_probes_returns_valid_unseen_items(fitted):
    rec, X, _ = fitted
    rec = copy.deepcopy(rec).set_params(retrieval="ivf", ivf_lists=8, ivf_probe=1)
    users = np.unique(X[:, 0])
    ids, scores = rec.recommend(users, k=5)
    seen = {u: set(X[X[:, 0] == u, 1]) for u in users}
    for user, row, row_scores in zip(users, ids, scores):
        found = [i for i in row if i is not None]
        assert not seen[user] & set(found)
        assert np.all(np.diff(row_scores[np.isfinite(row_scores)]) <= 1e-6)  # best first


def test_the_index_follows_new_items_and_is_not_pickled(fitted):
    rec, _, text = fitted
    rec = copy.deepcopy(rec).set_params(retrieval="ivf", ivf_lists=2, ivf_probe=2)
    rec.recommend(0, k=3)
    first = rec._ivf
    assert copy.deepcopy(rec)._ivf is first  # read-only: copies share it
    assert pickle.loads(pickle.dumps(rec)).__dict__.get("_ivf") is None  # rebuilt on first use
    rec.add_items({1000: "A new film (2030)"})
    ids, _ = rec.recommend(0, k=41)
    assert rec._ivf is not first and rec._ivf.n_items == 41 and 1000 in set(ids)


def test_fusion_and_a_bad_option_are_clear_errors(fitted):
    rec, _, _ = fitted
    fused = copy.deepcopy(rec).set_params(retrieval="ivf")
    fused.score_fusion_ = 1.0
    with pytest.raises(ValueError, match="retrieval='exact'"):
        fused.recommend(0)
    with pytest.raises(ValueError, match="retrieval"):
        copy.deepcopy(rec).set_params(retrieval="hnsw").recommend(0)


def test_cli_recommend_with_the_index(fitted, tmp_path):
    rec, _, _ = fitted
    rec.save(tmp_path / "model")
    args = ["recommend", str(tmp_path / "model"), "--user", "0", "--user", "3", "-k", "4"]
    exact = CliRunner().invoke(main, args)
    approximate = CliRunner().invoke(main, args + ["--retrieval", "ivf", "--ivf-probe", "100"])
    assert exact.exit_code == 0 and approximate.exit_code == 0, approximate.output
    rows = list(csv.reader(io.StringIO(approximate.stdout)))
    assert [r[2] for r in rows] == [r[2] for r in csv.reader(io.StringIO(exact.stdout))]


def test_spherical_kmeans_finds_planted_directions_and_reseeds_empty_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.eye(4) * 10
    x = centres.repeat_interleave(50, 0) + 0.1 * torch.randn(200, 4, generator=gen)
    found = kmeans(x, 4, 10, torch.Generator().manual_seed(1))
    torch.testing.assert_close(found.norm(dim=1), torch.ones(4))  # spherical: unit centroids
    closest = (torch.nn.functional.normalize(centres, dim=1) @ found.T).max(1).values
    assert (closest > 0.99).all()  # every planted direction has a centroid on it (a failed split would miss one)
    duplicated = torch.cat([x[:1].repeat(10, 1), x[1:3]])  # 3 distinct points, 5 clusters: some stay empty
    assert torch.isfinite(kmeans(duplicated, 5, 3, torch.Generator().manual_seed(0))).all()


def test_a_refit_does_not_keep_the_previous_fits_index(fitted):
    rec, X, text = fitted
    rec = copy.deepcopy(rec).set_params(retrieval="ivf", ivf_lists=4, ivf_probe=4)  # every list: exact
    users = np.unique(X[:, 0])
    rec.recommend(users, k=5)  # builds the index over this fit's vectors
    rec.set_params(random_state=1).fit(X, item_text=text)  # same catalogue, other vectors
    ids, scores = rec.recommend(users, k=5)
    exact_ids, exact_scores = copy.deepcopy(rec).set_params(retrieval="exact").recommend(users, k=5)
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-5, atol=1e-5)
