"""RARecommender end to end, on the synthetic catalogue with tiny LLMs."""

import hashlib

import numpy as np
import pytest
import torch
from sklearn.base import clone

from rarec import RARecommender
from rarec.cf import PopularityRecommender
from rarec.data import InteractionLog, make_interactions
from rarec.metrics import full_ranking_metrics
from rarec.model_selection import leave_last_out

from rarec.testing import tiny_llm

SASREC = dict(dim=32, n_layers=1, n_heads=2, inner_dim=64, dropout=0.1, max_len=20)


def synthetic_split():
    """(train array, test array, item texts) of a small synthetic catalogue."""
    log, text = make_interactions(n_users=120, n_items=48, n_categories=4, random_state=0)
    split = leave_last_out(log, n_valid=0)
    return split.train.to_array(), split.test.to_array(), text


@pytest.fixture(scope="module")
def data():
    return synthetic_split()


def small(llm, **kw):
    """A quick estimator on the tiny LLM; without output heads unless asked (tests/align/test_heads.py has theirs)."""
    params = dict(llm=llm, backbone_params=SASREC, cf_epochs=15, epochs=1, max_train_samples=64, sample_fraction=None,
                  batch_size=16, verbose=0, random_state=0, head_epochs=0)
    params.update(kw)
    return RARecommender(**params)


def checksum(model):
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def test_fit_never_changes_an_llm_weight(data):
    X, _, text = data
    model, tokenizer = tiny_llm(text)
    before = checksum(model)
    rec = small((model, tokenizer), epochs=2).fit(X, item_text=text)
    assert checksum(model) == before
    assert not any(p.requires_grad for p in model.parameters())
    assert rec.n_trainable_parameters_ > 0


def test_gradients_reach_every_trainable_tensor_and_nothing_else(data):
    X, _, text = data
    model, tokenizer = tiny_llm(text)
    rec = small((model, tokenizer), epochs=1, max_train_samples=16).fit(X, item_text=text)
    aligner, llm = rec.aligner_, rec.llm_
    aligner.train()
    id_dim = aligner.user_prefix.config.id_dim  # SASRec's 32 plus the co-occurrence factors
    users = torch.randn(4, 1, id_dim)
    items = torch.randn(4, 1, id_dim)
    h_u = aligner.encode(llm, "user", users, [[4, 5, 6]] * 4)
    h_i = aligner.encode(llm, "item", items, [[7, 8]] * 4)
    (h_u * h_i).sum().backward()
    for name, p in aligner.named_parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) > 0, name
    assert all(p.grad is None for p in llm.model.parameters())


def test_same_seed_same_predictions(data):
    X, _, text = data
    first = small(tiny_llm(text)).fit(X, item_text=text).predict(X[:5, 0])
    second = small(tiny_llm(text)).fit(X, item_text=text).predict(X[:5, 0])
    np.testing.assert_array_equal(first, second)


def test_predict_recommend_and_score_contract(data):
    X, T, text = data
    rec = small(tiny_llm(text)).fit(X, item_text=text)
    assert rec.item_vectors_.shape == (rec.n_items_, 32) and rec.user_vectors_.shape == (rec.n_users_, 32)
    pred = rec.predict(X[:3, 0])
    assert pred.shape == (3, rec.k)
    seen = {(u, i) for u, i, _ in X}
    assert not any((X[r, 0], i) in seen for r in range(3) for i in pred[r])
    ids, scores = rec.recommend(X[0, 0], k=5)
    assert ids.shape == scores.shape == (5,) and np.all(np.diff(scores) <= 0)
    cold_ids, _ = rec.recommend(histories=[[X[0, 1], X[1, 1]]], k=4)
    assert cold_ids.shape == (1, 4) and X[0, 1] not in cold_ids[0]
    value = rec.score(T)
    assert 0.0 <= value <= 1.0


def test_sklearn_params_and_clone():
    rec = RARecommender(epochs=7, k=5)
    assert rec.get_params()["epochs"] == 7
    other = clone(rec.set_params(lr=0.01))
    assert other.lr == 0.01 and not hasattr(other, "item_vectors_")


@pytest.mark.parametrize("params, message", [
    (dict(k=0), "The 'k' parameter of RARecommender must be an int in \\[1, inf\\). Got 0 instead."),
    (dict(loss="hinge"), "The 'loss' parameter"),
    (dict(backbone="gru"), "The 'backbone' parameter"),
    (dict(user_template="no placeholder"), "placeholder \\{history\\}"),
    (dict(use_id=False, n_ctx=0), "no prefix"),
    (dict(lr=0.0), "The 'lr' parameter"),
    (dict(text_factors=-1), "The 'text_factors' parameter"),
    (dict(text_factor_weight=-0.5), "The 'text_factor_weight' parameter"),
    (dict(cooccurrence_l2=0.0), "The 'cooccurrence_l2' parameter"),
    (dict(balance_id_blocks="yes"), "'balance_id_blocks' parameter of RARecommender must be True or False"),
    (dict(random_negative_gradients=1), "'random_negative_gradients' parameter of RARecommender must be True or"),
])
def test_invalid_parameters_are_named(data, params, message):
    X, _, text = data
    with pytest.raises(ValueError, match=message):
        RARecommender(**params).fit(X, item_text=text)


def test_bad_input(data):
    X, _, text = data
    rec = small(tiny_llm(text)).fit(X, item_text=text)
    with pytest.raises(KeyError, match="unknown user id 'nobody'.*histories="):
        rec.predict(["nobody"])
    with pytest.raises(ValueError, match="k parameter|'k' parameter"):
        rec.recommend(X[0, 0], k=rec.n_items_ + 1)
    with pytest.raises(ValueError, match="item_text holds no titles"):
        small(tiny_llm(text)).fit(X, item_text={})
    with pytest.raises(Exception, match="not in the interactions"):
        small(tiny_llm(text)).fit(X, item_text={10_000: "ghost"})


def test_nan_loss_stops_with_a_named_error(data, monkeypatch):
    X, _, text = data
    import rarec.align._trainer as trainer

    monkeypatch.setattr(trainer, "ranking_loss", lambda *a: torch.tensor(float("nan")))
    with pytest.raises(FloatingPointError, match="alignment loss became nan at epoch 1, step 1"):
        small(tiny_llm(text)).fit(X, item_text=text)


def test_non_finite_gradient_stops_with_the_parameter_and_step(data, monkeypatch):
    X, _, text = data
    from rarec.align import Towers

    build = Towers.build

    def poisoned(cls, *args, **kwargs):
        towers = build(*args, **kwargs)
        weight = towers.aligner.item_prefix.context  # one named tensor gets a NaN gradient
        weight.register_hook(lambda grad: grad * float("nan"))
        return towers

    monkeypatch.setattr(Towers, "build", classmethod(poisoned))
    with pytest.raises(FloatingPointError, match=r"gradient of item_prefix.context became non-finite at epoch 1, "
                                                 r"step 1"):
        small(tiny_llm(text)).fit(X, item_text=text)


def test_ra_rec_beats_popularity_and_reaches_its_backbone():
    log, text = make_interactions(n_users=120, n_items=48, n_categories=4, random_state=0)
    split = leave_last_out(log, n_valid=0)
    rec = small(tiny_llm(text), epochs=8, max_train_samples=600, align_weight=0.0)
    rec.fit(split.train.to_array(), item_text=text)
    # the same held-out items, ranked three ways, training items excluded
    test = split.test
    history = InteractionLog.from_any(split.train.to_array()).user_sequences()  # the same user indices as rec's
    cf_scores = rec.backbone_.score_histories(history)
    ra = rec.evaluate(split.test.to_array(), ks=[10])
    cf = full_ranking_metrics(lambda u: cf_scores[u], test, rec.seen_, ks=[10])
    pop = full_ranking_metrics(PopularityRecommender().fit(split.train).score_users, test, split.train, ks=[10])
    assert ra["ndcg@10"] > 2 * pop["ndcg@10"], (ra, pop)
    assert ra["hr@10"] >= cf["hr@10"] - 0.1, (ra, cf)


def test_sample_fraction_uses_the_tailored_selection(data):
    X, _, text = data
    rec = small(tiny_llm(text), max_train_samples=None, sample_fraction=0.1).fit(X, item_text=text)
    report = rec.selection_report_
    assert report["selected"] == round(0.1 * report["candidates"])
    assert rec.training_log_[0]["samples"] == report["selected"]
    with pytest.raises(ValueError, match="The 'sample_fraction' parameter of RARecommender"):
        small(tiny_llm(text), sample_fraction=1.5).fit(X, item_text=text)


def test_length_bucketed_encoding_equals_one_at_a_time(data):
    X, _, text = data
    rec = small(tiny_llm(text)).fit(X, item_text=text)
    items = np.array([5, 0, 17, 3, 9])
    together = rec.towers_.encode_items(items)
    for row, item in enumerate(items):
        torch.testing.assert_close(together[row], rec.towers_.encode_items(np.array([item]))[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(together, rec.item_vectors_[items], rtol=1e-4, atol=1e-5)


def test_llm_dtype_sets_the_precision_of_the_frozen_llm_only(data):
    X, _, text = data
    rec = small(tiny_llm(text), llm_dtype="bfloat16", epochs=1, max_train_samples=16).fit(X, item_text=text)
    assert rec.llm_.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in rec.aligner_.parameters())
    assert rec.item_vectors_.dtype == torch.float32 and torch.isfinite(rec.item_vectors_).all()
    with pytest.raises(ValueError, match="llm_dtype"):
        small(tiny_llm(text), llm_dtype="half").fit(X, item_text=text)


def history_of(X, user):
    """The user's raw item ids in time order."""
    rows = X[X[:, 0] == user]
    return list(rows[np.argsort(rows[:, 2], kind="stable"), 1])


def test_score_fusion_blends_in_the_cf_score_and_auto_picks_a_weight_on_validation(data, tmp_path):
    from rarec._scoring import FUSION_WEIGHTS

    X, _, text = data
    # without co-occurrence factors the CF score is the backbone's own (with them, tests/align has it)
    rec = small(tiny_llm(text), score_fusion="auto", cooccurrence_factors=0).fit(X, item_text=text)
    by_weight = rec.training_log_[0]["valid_ndcg@10_by_fusion_weight"]
    assert set(by_weight) == set(FUSION_WEIGHTS) and rec.score_fusion_ in FUSION_WEIGHTS
    best = max(r["valid_ndcg@10"] for r in rec.training_log_)
    assert best == max(max(r["valid_ndcg@10_by_fusion_weight"].values()) for r in rec.training_log_)
    users = np.unique(X[:, 0])[:6]
    idx = rec._user_indices(users)
    # a huge weight ranks by the CF backbone alone, weight 0 by the LLM alone
    histories = [history_of(X, u) for u in users]
    rec.score_fusion_ = 1e6
    cf = rec.backbone_.score_histories([rec.items_.encode(h) for h in histories], idx)
    torch.testing.assert_close(rec._scores(idx).argsort(dim=1, descending=True)[:, :5],
                               cf.argsort(dim=1, descending=True)[:, :5])
    rec.score_fusion_ = 0.0
    llm = rec.user_vectors_[idx] @ rec.item_vectors_.T
    assert torch.equal(rec._scores(idx), llm)
    # a history given explicitly ranks like the same user's cached vectors, fusion included
    rec.score_fusion_ = 1.0
    ids, _ = rec.recommend(histories=histories[:1], k=5)
    np.testing.assert_array_equal(ids[0], rec.predict(users[:1])[0][:5])
    rec.save(tmp_path / "m")
    back = RARecommender.load(tmp_path / "m", llm=tiny_llm(text))
    assert back.score_fusion_ == 1.0
    np.testing.assert_array_equal(back.predict(users), rec.predict(users))


@pytest.mark.parametrize("bad", [-1.0, "best"])
def test_score_fusion_rejects_bad_values(data, bad):
    X, _, text = data
    with pytest.raises(ValueError, match="score_fusion"):
        small(tiny_llm(text), score_fusion=bad).fit(X, item_text=text)




def test_a_fitted_backbone_is_used_as_it_is_and_an_unfitted_one_is_refused(data, tmp_path):
    from rarec.cf import SASRec, SASRecConfig

    X, _, text = data
    llm = tiny_llm(text)
    first = small(llm).fit(X, item_text=text)
    shared = small(llm, backbone=first.backbone_).fit(X, item_text=text)
    assert shared.backbone_ is first.backbone_  # not trained again
    users = np.unique(X[:, 0])[:5]
    np.testing.assert_array_equal(shared.predict(users), first.predict(users))  # same seed: the same fit
    back = RARecommender.load(shared.save(tmp_path / "m"), llm=llm)
    assert back.backbone == "sasrec"
    np.testing.assert_array_equal(back.predict(users), shared.predict(users))
    with pytest.raises(ValueError, match="not fitted"):
        small(llm, backbone=SASRec(SASRecConfig())).fit(X, item_text=text)
