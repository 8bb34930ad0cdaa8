"""The output heads: trained after the prefixes on fixed vectors, kept only when validation says they help."""

import json

import numpy as np
import pytest
import torch

import rarec._estimator as estimator
import rarec.align._trainer as trainer
from rarec import RARecommender
from rarec.align import Towers
from rarec.align._two_tower import OutputHeads
from rarec.testing import tiny_llm

from ..test_estimator import small, synthetic_split


@pytest.fixture(scope="module")
def data():
    X, _, text = synthetic_split()
    return X, text, tiny_llm(text)


def scripted_validation(monkeypatch, scores):
    """Validation NDCG@10 of each round, in order, instead of the measured one (the fusion weight 0 only)."""
    rounds = iter(scores)
    monkeypatch.setattr(estimator, "validation_ndcg", lambda *args, **kwargs: {0.0: next(rounds)})


@pytest.mark.parametrize("hidden", [0, 8])
def test_heads_start_as_the_identity(hidden):
    heads = OutputHeads(6, hidden)
    assert (heads.user_mlp is None) == (hidden == 0)
    x = torch.randn(3, 6)
    torch.testing.assert_close(heads("user", x), x)
    torch.testing.assert_close(heads("item", x.double()), x)  # float32 out, whatever comes in


def test_heads_that_raise_validation_are_kept_trained_and_saved(data, monkeypatch, tmp_path):
    X, text, llm = data
    scripted_validation(monkeypatch, [0.10, 0.20])  # one prefix epoch, then the heads
    rec = small(llm, head_epochs=2).fit(X, item_text=text)
    record = rec.training_log_[-1]
    assert record["stage"] == "output_heads" and record["kept"] and record["valid_ndcg@10"] == 0.20
    assert record["epochs"] == 2 and record["samples"] == 64 and record["seconds"] > 0
    heads = rec.towers_.aligner.heads
    assert heads is not None and not torch.allclose(heads.user.weight, torch.eye(heads.user.weight.shape[0]))
    assert rec.n_trainable_parameters_ == rec.towers_.aligner.n_parameters  # the heads count as trained
    # the fitted item vectors are the LLM's outputs through the item head
    rec.towers_.aligner.heads = None
    raw = rec.towers_.encode_items(np.arange(rec.n_items_))
    rec.towers_.aligner.heads = heads
    with torch.no_grad():
        torch.testing.assert_close(rec.item_vectors_, heads("item", raw), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(rec.item_vectors_, raw, atol=1e-3)
    ids, scores = rec.recommend(np.arange(10), k=5)
    folder = rec.save(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    assert config["format_version"] == 7 and config["aligner"]["output_head_hidden"] == rec.head_hidden == 1024
    back = RARecommender.load(folder, llm=llm)
    assert back.towers_.aligner.heads is not None
    ids_back, scores_back = back.recommend(np.arange(10), k=5)
    assert np.array_equal(ids, ids_back) and np.allclose(scores, scores_back, atol=1e-5)
    # vectors encoded after loading pass through the saved heads: they match the fitted ones
    torch.testing.assert_close(back.towers_.encode_items(np.arange(5)), rec.item_vectors_[:5], atol=1e-4, rtol=1e-4)


def test_linear_heads_are_saved_as_format_3_folders_were(data, monkeypatch, tmp_path):
    X, text, llm = data
    scripted_validation(monkeypatch, [0.10, 0.20])
    rec = small(llm, head_epochs=2, head_hidden=0).fit(X, item_text=text)
    heads = rec.towers_.aligner.heads
    assert heads.hidden == 0 and heads.user_mlp is None and heads.item_mlp is None
    folder = rec.save(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    assert config["aligner"]["output_head_hidden"] == 0
    ids = rec.recommend(np.arange(10), k=5)[0]
    # a format-3 folder (linear heads, before the MLP's width was written) reads the same
    config["format_version"] = 3
    del config["aligner"]["output_head_hidden"]
    (folder / "config.json").write_text(json.dumps(config))
    old = RARecommender.load(folder, llm=llm)
    assert old.towers_.aligner.heads.hidden == 0
    assert np.array_equal(ids, old.recommend(np.arange(10), k=5)[0])


def test_mlp_heads_train_from_the_identity_and_survive_save_and_load(data, monkeypatch, tmp_path):
    X, text, llm = data
    scripted_validation(monkeypatch, [0.10, 0.20])
    rec = small(llm, head_epochs=2, head_hidden=12).fit(X, item_text=text)
    heads = rec.towers_.aligner.heads
    assert heads.hidden == 12 and heads.user_mlp[0].out_features == heads.item_mlp[0].out_features == 12
    for mlp in (heads.user_mlp, heads.item_mlp):  # the last layers start at zero and then learn
        assert mlp[2].weight.abs().max() > 0
    assert heads.item_mlp[2].bias is None  # an item-side output bias would not change any ranking
    folder = rec.save(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    assert config["aligner"]["output_head_hidden"] == 12
    back = RARecommender.load(folder, llm=llm)
    assert back.towers_.aligner.heads.hidden == 12
    ids, scores = rec.recommend(np.arange(10), k=5)
    ids_back, scores_back = back.recommend(np.arange(10), k=5)
    assert np.array_equal(ids, ids_back) and np.allclose(scores, scores_back, atol=1e-5)
    torch.testing.assert_close(back.towers_.encode_items(np.arange(5)), rec.item_vectors_[:5], atol=1e-4, rtol=1e-4)


def test_a_seeded_fit_draws_the_same_mlp_heads(data, monkeypatch):
    X, text, llm = data
    heads = []
    for _ in range(2):
        scripted_validation(monkeypatch, [0.10, 0.20])
        heads.append(small(llm, head_epochs=1, head_hidden=8).fit(X, item_text=text).towers_.aligner.heads)
    for (name, first), second in zip(heads[0].state_dict().items(), heads[1].state_dict().values()):
        assert torch.equal(first, second), name


def test_heads_that_do_not_raise_validation_are_dropped(data, monkeypatch):
    X, text, llm = data
    scripted_validation(monkeypatch, [0.20, 0.10])
    rec = small(llm, head_epochs=2).fit(X, item_text=text)
    assert rec.training_log_[-1]["kept"] is False and rec.towers_.aligner.heads is None
    scripted_validation(monkeypatch, [0.20])
    plain = small(llm, head_epochs=0).fit(X, item_text=text)
    assert all("stage" not in record for record in plain.training_log_)
    torch.testing.assert_close(rec.item_vectors_, plain.item_vectors_)  # the prefixes alone, as without heads


def test_heads_cost_no_extra_pass_of_the_catalogue_through_the_llm(data, monkeypatch):
    """The heads' stage encodes the catalogue once; validation after it and the fit's final catalogue vectors
    reuse those outputs, so a fit with heads sends exactly as many item prompts through the LLM as one without."""
    X, text, llm = data
    encoded, original = [], Towers.encode

    def spy(self, tower, cf, tokens, *args, **kwargs):
        if tower == "item":
            encoded.append(len(tokens))
        return original(self, tower, cf, tokens, *args, **kwargs)

    monkeypatch.setattr(Towers, "encode", spy)
    with_heads = small(llm, head_epochs=2).fit(X, item_text=text)
    rows_with_heads, encoded[:] = sum(encoded), []
    small(llm, head_epochs=0).fit(X, item_text=text)
    assert rows_with_heads == sum(encoded) > 0
    assert with_heads.towers_.item_outputs is None  # held only while fitting


@pytest.mark.parametrize("negatives", ["in_batch", "catalogue"])
def test_heads_train_on_the_prefixes_objective_for_head_epochs(data, monkeypatch, negatives):
    X, text, llm = data
    seen, original = [], trainer.ranking_loss

    def spy(scores, target, loss):
        seen.append((tuple(scores.shape), scores.requires_grad))
        return original(scores, target, loss)

    monkeypatch.setattr(trainer, "ranking_loss", spy)
    scripted_validation(monkeypatch, [0.1, 0.2])
    rec = small(llm, head_epochs=3, negatives=negatives, n_random_negatives=8).fit(X, item_text=text)
    prefix_steps, head_steps = 64 // 16, 3 * (64 // 16)
    assert len(seen) == prefix_steps + head_steps
    if negatives == "catalogue":
        assert all(shape == (16, rec.n_items_) for shape, _ in seen[prefix_steps:])
    else:  # the batch's targets plus 8 random items, duplicates merged
        assert all(shape[0] == 16 and shape[1] <= 16 + 8 for shape, _ in seen[prefix_steps:])


def test_heads_train_in_batches_of_head_batch_size_with_their_own_logq(data, monkeypatch):
    X, text, llm = data
    seen, batches, original = [], [], trainer.ranking_loss
    original_log_q = trainer._log_q

    def spy(scores, target, loss):
        seen.append(tuple(scores.shape))
        return original(scores, target, loss)

    def spy_log_q(targets, n_items, config, group, device, heads=False):
        batches.append((heads, trainer._batch_size(config, heads)))
        return original_log_q(targets, n_items, config, group, device, heads)

    monkeypatch.setattr(trainer, "ranking_loss", spy)
    monkeypatch.setattr(trainer, "_log_q", spy_log_q)
    scripted_validation(monkeypatch, [0.1, 0.2])
    rec = small(llm, head_epochs=2, head_batch_size=32, n_random_negatives=8).fit(X, item_text=text)
    prefix_steps, head_steps = 64 // 16, 2 * (64 // 32)
    assert len(seen) == prefix_steps + head_steps
    assert all(shape[0] == 16 for shape in seen[:prefix_steps])
    assert all(shape[0] == 32 and shape[1] <= 32 + 8 for shape in seen[prefix_steps:])
    assert batches == [(False, 16), (True, 32)]  # the heads' logQ counts the draws of their own batches
    assert rec.get_params()["head_batch_size"] == 32


def test_head_parameters_are_checked(data):
    X, text, llm = data
    with pytest.raises(ValueError, match="head_batch_size"):
        small(llm, head_batch_size=1).fit(X, item_text=text)
    with pytest.raises(ValueError, match="head_epochs"):
        small(llm, head_epochs=-1).fit(X, item_text=text)
    with pytest.raises(ValueError, match="head_lr"):
        small(llm, head_lr=0.0).fit(X, item_text=text)
    with pytest.raises(ValueError, match="head_hidden"):
        small(llm, head_hidden=-1).fit(X, item_text=text)


def test_head_samples_are_drawn_among_the_samples_the_prefixes_did_not_train_on():
    from types import SimpleNamespace

    from rarec._fit_steps import head_samples
    from rarec.align import all_next_item_samples

    sequences = [np.arange(6), np.arange(3, 12), np.arange(2)]
    every = all_next_item_samples(sequences)
    chosen = every.subset(np.arange(0, len(every), 2))
    key = lambda s: set(zip(s.users.tolist(), s.ends.tolist()))  # noqa: E731
    rec = SimpleNamespace(head_samples=3, head_epochs=30)
    more = head_samples(rec, sequences, chosen, np.random.default_rng(0))
    assert len(more) == 3 and not key(more) & key(chosen) and key(more) <= key(every)
    rec.head_samples = 100  # more than are left: all of the rest
    assert key(head_samples(rec, sequences, chosen, np.random.default_rng(0))) == key(every) - key(chosen)
    rec.head_samples = 0
    assert head_samples(rec, sequences, chosen, np.random.default_rng(0)) is None


@pytest.mark.parametrize("prefix_layers", ["all", 1])
def test_heads_train_on_the_prefixes_samples_and_the_head_samples(data, monkeypatch, prefix_layers):
    X, text, _ = data
    llm = tiny_llm(text, layers=3)  # prefix_layers=1: the prefixes' samples come with cached lower layers
    shapes, original = [], trainer.ranking_loss

    def spy(scores, target, loss):
        shapes.append(tuple(scores.shape))
        return original(scores, target, loss)

    monkeypatch.setattr(trainer, "ranking_loss", spy)
    scripted_validation(monkeypatch, [0.1, 0.2])
    rec = small(llm, head_epochs=1, head_hidden=0, head_samples=40, prefix_layers=prefix_layers).fit(
        X, item_text=text)
    record = rec.training_log_[-1]
    assert record["stage"] == "output_heads" and record["samples"] == 64 + 40
    assert len(shapes) == 64 // 16 + -(-104 // 16)  # the prefixes' steps, then the heads' over 104 samples
    scripted_validation(monkeypatch, [0.1])
    plain = small(llm, head_epochs=0, head_samples=40, prefix_layers=prefix_layers).fit(X, item_text=text)
    torch.testing.assert_close(plain.towers_.aligner.user_prefix.state_dict(),
                               rec.towers_.aligner.user_prefix.state_dict())  # the prefixes never see them


def test_pooling_heads_read_the_history_mean_item_vector_and_survive_save_load_and_add_items(data, monkeypatch,
                                                                                              tmp_path):
    X, text, llm = data
    scripted_validation(monkeypatch, [0.10, 0.20])
    rec = small(llm, head_epochs=2, head_hidden=8).fit(X, item_text=text)  # history_pooling=True by default
    towers, heads = rec.towers_, rec.towers_.aligner.heads
    assert heads.pools and heads.user_pool.weight.abs().max() > 0  # zero at the start, then trained
    # the basis is the catalogue's LLM outputs before the heads; the fitted item vectors are it through the item head
    assert towers.item_basis.shape == (rec.n_items_, towers.hidden_size)
    with torch.no_grad():
        torch.testing.assert_close(rec.item_vectors_, heads("item", towers.item_basis), atol=1e-4, rtol=1e-4)
    # a user vector adds the head's map of the mean basis vector over the history's distinct items
    history = np.array([3, 5, 5, 9])
    mean = towers.item_basis[[3, 5, 9]].mean(0, keepdim=True)
    torch.testing.assert_close(towers.pooled_history([history]), mean, atol=1e-4, rtol=1e-4)
    heads.user_pool.weight.data.zero_()
    without = towers.encode_users([history], np.array([-1]))
    heads.user_pool.weight.data.copy_(torch.eye(towers.hidden_size))
    assert not torch.allclose(towers.encode_users([history], np.array([-1])), without, atol=1e-4)
    rec = small(llm, head_epochs=2, head_hidden=8)
    scripted_validation(monkeypatch, [0.10, 0.20])
    rec.fit(X, item_text=text)
    ids, _ = rec.recommend(np.arange(10), k=5)
    new_history = [list(rec.items_.decode(np.array([1, 4, 7])))]
    fresh = rec.recommend(histories=new_history, k=5)[0]
    folder = rec.save(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    assert config["aligner"]["output_head_pool"] is True
    back = RARecommender.load(folder, llm=llm)
    torch.testing.assert_close(back.towers_.item_basis, rec.towers_.item_basis)
    assert np.array_equal(ids, back.recommend(np.arange(10), k=5)[0])
    torch.testing.assert_close(back.towers_.encode_users([np.array([1, 4, 7])], np.array([-1])),
                               rec.towers_.encode_users([np.array([1, 4, 7])], np.array([-1])), atol=1e-5, rtol=1e-5)
    assert np.array_equal(fresh, back.recommend(histories=new_history, k=5)[0])
    # an added item joins the basis (its output before the heads), so a history may name it
    back.add_items({10_000: "A brand new item"})
    assert back.towers_.item_basis.shape[0] == back.n_items_ == rec.n_items_ + 1
    with torch.no_grad():
        torch.testing.assert_close(back.item_vectors_[-1:], back.towers_.aligner.heads(
            "item", back.towers_.item_basis[-1:]), atol=1e-4, rtol=1e-4)
    assert back.towers_.encode_users([np.array([1, back.n_items_ - 1])], np.array([-1])).shape == (1, 32)


def test_without_pooling_or_kept_heads_no_basis_is_kept(data, monkeypatch, tmp_path):
    X, text, llm = data
    scripted_validation(monkeypatch, [0.10, 0.20])
    rec = small(llm, head_epochs=2, head_hidden=0, history_pooling=False).fit(X, item_text=text)
    assert not rec.towers_.aligner.heads.pools and rec.towers_.item_basis is None
    folder = rec.save(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    assert config["aligner"]["output_head_pool"] is False
    # a format-4 folder (before pooling and the co-occurrence teacher) reads with both off
    config["format_version"] = 4
    del config["aligner"]["output_head_pool"]
    for name in ("cooccurrence_teacher", "history_pooling"):
        del config["params"][name]
    (folder / "config.json").write_text(json.dumps(config))
    old = RARecommender.load(folder, llm=llm)
    assert (old.cooccurrence_teacher, old.history_pooling) == (0.0, False) and old.towers_.item_basis is None
    scripted_validation(monkeypatch, [0.20, 0.10])  # heads that do not help are dropped, and so is their basis
    dropped = small(llm, head_epochs=2, head_hidden=0).fit(X, item_text=text)
    assert dropped.towers_.aligner.heads is None and dropped.towers_.item_basis is None
    with pytest.raises(ValueError, match="history_pooling"):
        small(llm, history_pooling=1).fit(X, item_text=text)
    with pytest.raises(ValueError, match="cooccurrence_teacher"):
        small(llm, cooccurrence_teacher=-0.1).fit(X, item_text=text)


def test_pooling_heads_need_the_pooled_vectors():
    heads = OutputHeads(6, 0, pool=True)
    x = torch.randn(2, 6)
    torch.testing.assert_close(heads("user", x, torch.randn(2, 6)), x)  # the pooling map starts at zero
    with pytest.raises(ValueError, match="pooled"):
        heads("user", x)
