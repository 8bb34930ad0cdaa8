"""What is particular to each backbone."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from rarec.cf import (
    BPR,
    SASRec,
    SASRecConfig,
    CFBackbone,
    Precomputed,
    TrainingConfig,
    make_backbone,
)
from rarec.data import InteractionLog, make_interactions
from rarec.metrics import full_ranking_metrics
from rarec.model_selection import leave_last_out

from .conftest import FACTORIES


@pytest.mark.parametrize("n_negatives", [None, 8], ids=["full-softmax", "sampled-softmax"])
def test_sasrec_learns_a_deterministic_next_item(n_negatives):
    # p_sequential=1: every next item is fixed by the previous one.
    log, _ = make_interactions(n_users=120, n_items=48, n_categories=2, p_sequential=1.0, p_noise=0.0,
                               min_length=6, max_length=12, random_state=3)
    split = leave_last_out(log)
    model = SASRec(SASRecConfig(dim=32, n_layers=1, inner_dim=64, dropout=0.1, max_len=12, n_negatives=n_negatives),
                   TrainingConfig(epochs=60, batch_size=32, lr=5e-3, patience=10, verbose=False))
    model.fit(split.train, split.valid)
    out = full_ranking_metrics(model.scorer(split.before_test), split.test, split.before_test, ks=[1])
    assert out["hr@1"] > 0.9


def test_sasrec_auto_negatives_switch_to_a_sampled_softmax_when_the_full_one_is_too_costly(monkeypatch):
    from rarec.cf import _sasrec

    config = SASRecConfig()
    assert config.n_negatives == "auto"
    budget = _sasrec.AUTO_FULL_SOFTMAX_MAX_SCORES
    assert config.negatives_for(10_000, budget // 10_000) is None
    assert config.negatives_for(10_000, budget // 10_000 + 1) == _sasrec.AUTO_NEGATIVES
    assert SASRecConfig(n_negatives=None).negatives_for(10**6, 10**7) is None
    assert SASRecConfig(n_negatives=8).negatives_for(10, 10) == 8
    with pytest.raises(ValueError, match="n_negatives"):
        SASRecConfig(n_negatives="all")
    # 10 users x 6 items: 50 targets per epoch over 30 items, 1,500 scores: full under a budget of 1,500 ...
    log = InteractionLog.from_records(np.repeat(np.arange(10), 6), np.arange(60) % 30)
    drawn = []
    real = _sasrec.draw_negatives
    monkeypatch.setattr(_sasrec, "draw_negatives", lambda n, *args: drawn.append(n) or real(n, *args))
    monkeypatch.setattr(_sasrec, "AUTO_NEGATIVES", 5)
    for budget, expected in ((1500, None), (1499, 5)):
        monkeypatch.setattr(_sasrec, "AUTO_FULL_SOFTMAX_MAX_SCORES", budget)
        drawn.clear()
        model = SASRec(SASRecConfig(dim=8, n_heads=1, max_len=6), TrainingConfig(epochs=1, verbose=False,
                                                                               device="cpu")).fit(log)
        assert model.n_negatives_ == expected and drawn and set(drawn) == {expected}


def test_sasrec_batches_are_as_wide_as_their_longest_window():
    log = InteractionLog.from_records(np.repeat(np.arange(30), 6), np.tile(np.arange(6), 30))
    model = SASRec(SASRecConfig(dim=8, n_heads=1, max_len=50), TrainingConfig(epochs=1, verbose=False, device="cpu"))
    model.fit(log)
    inputs, targets, _ = next(model._epoch_batches(model.train_sequences_, torch.Generator().manual_seed(0)))
    assert inputs.shape[1] == targets.shape[1] == 5  # 6 items: 5 inputs, not max_len=50 columns


def test_sasrec_inductive_embedding_equals_the_one_inside_training(fitted, cf_split):
    if not fitted.inductive:
        pytest.skip("transductive backbone")
    seqs = cf_split.train.user_sequences()
    # A "new user" whose history equals user 4's gets user 4's vector.
    known = fitted.scorer()(np.array([4]))
    new = fitted.score_histories([seqs[4].copy()])
    torch.testing.assert_close(new, known)
    if isinstance(fitted, SASRec):
        # ... and it is the hidden state at the last position of the training window.
        window = torch.as_tensor(seqs[4][-fitted.config.max_len:] + 1)[None]
        with torch.no_grad():
            hidden = fitted.module_(window.to(fitted.device_))[0, -1].cpu()
        torch.testing.assert_close(fitted.user_embeddings([seqs[4]])[0, 0], hidden)


def test_padding_in_a_batch_does_not_change_a_users_vector(fitted):
    short, long = np.array([3, 1]), np.arange(15)
    alone = fitted.user_embeddings([short], users=[-1])
    batched = fitted.user_embeddings([short, long], users=[-1, -1])
    torch.testing.assert_close(batched[:1], alone, rtol=1e-5, atol=1e-6)


def test_comirec_gives_k_interests_that_differ(cf_split):
    from .conftest import _FITTED

    model = _FITTED.get("comirec") or FACTORIES["comirec"]().fit(cf_split.train, cf_split.valid)
    vectors = model.user_embeddings([cf_split.train.user_sequences()[0]])
    assert vectors.shape[1] == 3
    assert not torch.allclose(vectors[0, 0], vectors[0, 1])


def test_bpr_unknown_user_falls_back_to_history_mean(cf_split):
    model = FACTORIES["bpr"]()
    model.training.epochs = 2
    model.fit(cf_split.train)
    hist = np.array([2, 5, 9])
    fallback = model.user_embeddings([hist], users=[-1])[0, 0]
    torch.testing.assert_close(fallback, model.item_embeddings()[hist].mean(0))
    known = model.user_embeddings([hist], users=[0])[0, 0]
    torch.testing.assert_close(known, model.module_.user_embedding.weight[0].detach().cpu())


def test_bpr_mixed_known_and_unknown_users_each_get_their_own_vector(cf_split):
    model = FACTORIES["bpr"]()
    model.training.epochs = 1
    model.fit(cf_split.train)
    histories = [np.array([2, 5, 9]), np.array([1]), np.array([4, 4, 7, 3])]
    vectors = model.user_embeddings(histories, users=[-1, 3, -1])[:, 0]
    items = model.item_embeddings()
    torch.testing.assert_close(vectors[0], items[[2, 5, 9]].mean(0))
    torch.testing.assert_close(vectors[1], model.module_.user_embedding.weight[3].detach().cpu())
    torch.testing.assert_close(vectors[2], items[[4, 4, 7, 3]].mean(0))


def test_a_bpr_step_moves_only_the_rows_of_its_batch(cf_split):
    # lazy Adam: a dense Adam would keep moving the first batch's users in the second step (momentum)
    model = BPR(training=TrainingConfig(epochs=1, verbose=False, device="cpu")).fit(cf_split.train)
    optimizer = model._optimizer()
    table = model.module_.user_embedding.weight
    for users in ([0, 1], [2, 3]):
        before = table.detach().clone()
        batch = tuple(torch.as_tensor(x) for x in (users, [5, 6], [7, 8]))
        optimizer.zero_grad()
        model._batch_loss(batch).backward()
        optimizer.step()
    moved = (table.detach() != before).any(1)
    assert moved[[2, 3]].all() and not moved[[0, 1]].any() and not moved[4:].any()


def test_bpr_weight_decay_is_an_l2_penalty_on_the_batch(cf_split):
    model = BPR(training=TrainingConfig(epochs=1, verbose=False, device="cpu")).fit(cf_split.train)
    model.module_.requires_grad_(False)
    batch = tuple(torch.as_tensor(x) for x in ([0, 1], [5, 6], [7, 8]))
    plain = float(model._batch_loss(batch))
    model.training.weight_decay = 0.1
    rows = [model.module_.user_embedding.weight[[0, 1]], model.module_.item_embedding.weight[[5, 6, 7, 8]]]
    expected = plain + 0.1 / 2 * float(sum(r.pow(2).sum() for r in rows)) / 2
    assert float(model._batch_loss(batch)) == pytest.approx(expected, rel=1e-5)


def test_bpr_negatives_are_never_items_the_user_has_seen():
    # a dense log: each user has seen 6 of 8 items, so most uniform draws clash and must be redrawn
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(50), 6)
    items = np.concatenate([rng.choice(8, 6, replace=False) for _ in range(50)])
    log = InteractionLog.from_records(users, items)
    model = BPR(training=TrainingConfig(epochs=1, batch_size=32, verbose=False, device="cpu"))
    model.fit(log)
    store = model.train_sequences_
    seen = {(u, int(i)) for u in range(len(store.lengths)) for i in store.sequences([u])[0]}
    batches = list(model._epoch_batches(store, torch.Generator().manual_seed(1)))
    pairs = [(int(u), int(j)) for b in batches for u, j in zip(b[0], b[2])]
    assert len(pairs) == len(store.flat)
    assert not seen.intersection(pairs)
    assert len({j for _, j in pairs}) > 1


def test_precomputed_arrays_file_and_multi_interest(cf_split, tmp_path):
    n_users, n_items = cf_split.train.n_users, cf_split.train.n_items
    rng = np.random.default_rng(0)
    items = rng.normal(size=(n_items, 8)).astype(np.float32)
    users = rng.normal(size=(n_users, 2, 8)).astype(np.float32)
    model = Precomputed(items, users).fit(cf_split.train)
    assert model.n_interests == 2
    expected = (torch.as_tensor(users[[1]]) @ torch.as_tensor(items).T).amax(1)
    torch.testing.assert_close(model.scorer()(np.array([1])), expected)
    path = tmp_path / "emb.safetensors"
    save_file({"item_embeddings": torch.as_tensor(items), "user_embeddings": torch.as_tensor(users)}, str(path))
    from_file = make_backbone("precomputed", path=path).fit(cf_split.train)
    torch.testing.assert_close(from_file.scorer()(np.array([1])), expected)
    from_file.save(tmp_path / "saved")
    torch.testing.assert_close(CFBackbone.load(tmp_path / "saved").scorer()(np.array([1])), expected)
    # item vectors only: users fall back to their history mean
    only_items = Precomputed(items).fit(cf_split.train)
    seq = cf_split.train.user_sequences()[0]
    torch.testing.assert_close(only_items.user_embeddings([seq], users=[0])[0, 0], torch.as_tensor(items[seq]).mean(0))


@pytest.mark.parametrize("items, users, message", [
    (np.zeros((5, 4)), None, "has 5 rows but the interaction log has"),
    ("nan", None, "row 2 holds NaN"),
    ("ok", np.zeros((3, 4)), "user_embeddings must have shape"),
    (np.zeros(4), None, "must be 2-D"),
])
def test_precomputed_validation(cf_split, items, users, message):
    n_items = cf_split.train.n_items
    if isinstance(items, str):
        arr = np.zeros((n_items, 4), dtype=np.float32)
        if items == "nan":
            arr[2, 1] = np.nan
        items = arr
    with pytest.raises(ValueError, match=message):
        Precomputed(items, users).fit(cf_split.train)


def test_precomputed_bad_file(tmp_path, cf_split):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        Precomputed(path=bad).fit(cf_split.train)
    with pytest.raises(FileNotFoundError):
        Precomputed(path=tmp_path / "missing.safetensors").fit(cf_split.train)


def test_make_backbone_and_config_validation():
    assert isinstance(make_backbone("bpr"), BPR)
    with pytest.raises(ValueError, match="The 'backbone' parameter must be one of"):
        make_backbone("gru4rec")
    with pytest.raises(ValueError, match="divisible"):
        SASRecConfig(dim=30, n_heads=4)
    with pytest.raises(ValueError, match="n_negatives"):
        SASRecConfig(n_negatives=0)
    with pytest.raises(ValueError, match="The 'lr' parameter of TrainingConfig"):
        TrainingConfig(lr=0)


def test_load_rejects_newer_format_and_garbage(tmp_path, fitted):
    fitted.save(tmp_path / "m")
    meta = tmp_path / "m" / "backbone.json"
    import json

    data = json.loads(meta.read_text())
    data["format_version"] = 99
    meta.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="newer rarec"):
        CFBackbone.load(tmp_path / "m")
    meta.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        CFBackbone.load(tmp_path / "m")


@pytest.mark.parametrize("variant", [dict(n_negatives=64, selection="soft"), dict(n_negatives=None)],
                         ids=["soft-selection", "full-softmax"])
def test_comirec_variants_beat_popularity(cf_split, variant):
    from rarec.cf import ComiRec, ComiRecConfig, PopularityRecommender

    model = ComiRec(ComiRecConfig(dim=32, n_interests=3, max_len=20, **variant),
                    TrainingConfig(epochs=25, batch_size=128, lr=5e-3, patience=8, verbose=False, random_state=0))
    model.fit(cf_split.train, cf_split.valid)
    ours = full_ranking_metrics(model.scorer(cf_split.before_test), cf_split.test, cf_split.before_test, ks=[10])
    pop = full_ranking_metrics(PopularityRecommender().fit(cf_split.before_test).score_users, cf_split.test,
                               cf_split.before_test, ks=[10])
    assert ours["ndcg@10"] > 2 * pop["ndcg@10"]


def test_comirec_config_rejects_bad_values():
    from rarec.cf import ComiRecConfig

    with pytest.raises(ValueError, match="The 'selection' parameter of ComiRecConfig"):
        ComiRecConfig(selection="mean")
    with pytest.raises(ValueError, match="n_negatives"):
        ComiRecConfig(n_negatives=0)


@pytest.mark.parametrize("name", ["bpr", "sasrec"])
def test_training_shows_progress_per_batch_with_a_total_from_the_first_epoch(cf_split, capsys, name):
    from rarec.cf import TrainingConfig, make_backbone

    training = TrainingConfig(epochs=2, batch_size=16, patience=5, random_state=0, device="cpu", verbose=True)
    backbone = make_backbone(name, training, dim=8).fit(cf_split.train, cf_split.test)
    err = capsys.readouterr().err
    n_batches = sum(1 for _ in backbone._epoch_batches(backbone.train_sequences_, torch.Generator()))
    first = err.split("epoch 2")[0]
    assert "epoch 1" in first and f"/{n_batches} " in first  # a total, so an estimate, from the first epoch
