"""Memory-bounded top-k: chunked results equal the dense computation."""

import numpy as np
import pytest
import torch

from rarec import RARecommender
from rarec._topk import chunk_sizes, row_moments, top_k
from rarec.data import make_interactions
from rarec.model_selection import leave_last_out
from rarec.testing import tiny_llm


def _dense_top_k(scores, k, exclude):
    scores = scores.clone()
    for row, items in enumerate(exclude):
        scores[row, torch.as_tensor(items, dtype=torch.long)] = -torch.inf
    return torch.topk(scores, k, dim=1)


@pytest.mark.parametrize("memory_mb", [1e-5, 2e-4, 1e-3, 1024])
def test_chunked_top_k_equals_dense_top_k(memory_mb):
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(37, 101, generator=gen)
    rng = np.random.default_rng(0)
    exclude = [rng.choice(101, size=rng.integers(0, 20), replace=False) for _ in range(37)]
    exclude[3] = np.arange(100)  # only one item left: padded with -inf
    values, indices = top_k(lambda rows, items: scores[rows][:, items], 37, 101, 5, exclude, memory_mb)
    dense = _dense_top_k(scores, 5, exclude)
    torch.testing.assert_close(values, dense.values)
    finite = torch.isfinite(values)
    assert torch.equal(indices[finite], dense.indices[finite])
    assert finite[3].sum() == 1 and indices[3, 0] == 100


def test_chunk_sizes_respect_the_budget():
    rows, items = chunk_sizes(100_000, 1_000_000, memory_mb=64)
    assert rows * items * 4 <= 64 * 2**20 and items == 1_000_000
    rows, items = chunk_sizes(10, 1_000_000, memory_mb=1)
    assert rows == 1 and items == 2**18
    assert chunk_sizes(5, 7, memory_mb=1024) == (5, 7)


def test_row_moments_match_mean_and_std():
    scores = torch.randn(9, 50) * 3 + 1
    mean, std = row_moments(lambda rows, items: scores[rows][:, items], 9, 50, memory_mb=1e-4)
    torch.testing.assert_close(mean, scores.mean(1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(std, scores.std(1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fusion", [0.0, 1.0])
def test_recommend_in_small_chunks_equals_recommend_in_one_block(fusion):
    log, text = make_interactions(n_users=60, n_items=40, n_categories=4, random_state=1)
    X = leave_last_out(log, n_valid=0).train.to_array()
    rec = RARecommender(llm=tiny_llm(text), backbone_params=dict(dim=16, n_layers=1, max_len=10, inner_dim=32),
                        cf_epochs=3, epochs=1, max_train_samples=16, batch_size=8, verbose=0, random_state=0,
                        score_fusion=fusion).fit(X, item_text=text)
    users = np.unique(X[:, 0])
    whole_ids, whole_scores = rec.recommend(users, k=7)
    rec.set_params(ranking_memory_mb=1e-4)  # 26 scores per block
    chunk_ids, chunk_scores = rec.recommend(users, k=7)
    np.testing.assert_allclose(chunk_scores, whole_scores, rtol=1e-5, atol=1e-5)
    assert (chunk_ids == whole_ids).mean() > 0.99  # exact ties may order differently
    # and the same scores as the dense rows that evaluate() ranks
    idx = rec._user_indices(users)
    dense = rec._scores(idx).numpy()
    for row, u in enumerate(idx):
        dense[row, rec.seen_.indices[rec.seen_.indptr[u]:rec.seen_.indptr[u + 1]]] = -np.inf
    np.testing.assert_allclose(whole_scores, -np.sort(-dense, axis=1)[:, :7], rtol=1e-5, atol=1e-5)


def test_evaluate_scores_users_in_blocks_within_the_memory_budget(monkeypatch):
    import rarec._serving as module

    log, text = make_interactions(n_users=60, n_items=40, n_categories=4, random_state=1)
    split = leave_last_out(log, n_valid=0)
    rec = RARecommender(llm=tiny_llm(text), backbone_params=dict(dim=16, n_layers=1, max_len=10, inner_dim=32),
                        cf_epochs=3, epochs=1, max_train_samples=16, batch_size=8, verbose=0,
                        random_state=0).fit(split.train.to_array(), item_text=text)
    whole = rec.evaluate(split.test.to_array())
    sizes, original = [], module.full_ranking_metrics

    def spy(*args, batch_size=256, **kwargs):
        sizes.append(batch_size)
        return original(*args, batch_size=batch_size, **kwargs)

    monkeypatch.setattr(module, "full_ranking_metrics", spy)
    rec.set_params(ranking_memory_mb=4 * 40 * 3 / 2**20)  # three users' scores at a time
    assert rec.evaluate(split.test.to_array()) == pytest.approx(whole)
    assert sizes == [3]


def test_evaluate_per_user_returns_each_users_metrics_under_their_ids():
    data = make_interactions(n_users=40, n_items=30, random_state=2)
    split = leave_last_out(data.interactions, n_valid=0)
    rec = RARecommender(llm=tiny_llm(data.item_text), backbone="bpr", cf_epochs=2, max_train_samples=16,
                        sample_fraction=None, batch_size=8, device="cpu", random_state=0, verbose=0)
    rec.fit(split.train, item_text=data.item_text)
    mean = rec.evaluate(split.test, ks=[5])
    per_user = rec.evaluate(split.test, ks=[5], per_user=True)
    assert sorted(per_user["users"].tolist()) == sorted(split.test.users.ids[np.unique(split.test.user_codes)])
    for key, value in mean.items():
        assert per_user[key].mean() == pytest.approx(value)
    # each user's value is that user's own: evaluating one user alone gives the same number
    user = per_user["users"][3]
    alone = split.test.subset(split.test.users.ids[split.test.user_codes] == user)
    assert rec.evaluate(alone, ks=[5])["ndcg@5"] == pytest.approx(per_user["ndcg@5"][3])
