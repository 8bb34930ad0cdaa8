"""The alignment trainer's objectives: logQ-corrected in-batch candidates and the catalogue softmax."""

import numpy as np
import pytest
import torch

import rarec.align._trainer as trainer
from rarec import RARecommender
from rarec.align import Towers
from rarec.testing import tiny_llm

from ..test_estimator import small, synthetic_split


@pytest.fixture(scope="module")
def data():
    X, _, text = synthetic_split()
    return X, text, tiny_llm(text)


def captured(monkeypatch, rec, X, text, function="ranking_loss"):
    """The first two tensors ``trainer.<function>`` is given at every step of ``rec.fit``: (scores, targets)
    of the ranking loss, (scores, teacher) of the distillation term."""
    seen, original = [], getattr(trainer, function)

    def spy(first, second, *rest):
        seen.append((first.detach().clone(), second.detach().clone()))
        return original(first, second, *rest)

    with monkeypatch.context() as patch:
        patch.setattr(trainer, function, spy)
        rec.fit(X, item_text=text)
    return seen


def captured_scores(monkeypatch, rec, X, text):
    return captured(monkeypatch, rec, X, text, "ranking_loss")


def captured_teachers(monkeypatch, rec, X, text):
    return captured(monkeypatch, rec, X, text, "distillation_loss")


def test_logq_subtracts_the_log_of_each_candidates_expected_draws(data, monkeypatch):
    X, text, llm = data
    plain = captured_scores(monkeypatch, small(llm, negatives="in_batch", logq=False), X, text)
    corrected = captured_scores(monkeypatch, small(llm, negatives="in_batch", logq=True), X, text)
    # Step 1: same seed, same weights, same batch; the logits differ by a per-candidate offset only.
    difference = plain[0][0] - corrected[0][0]  # (B, M) = log q(item) of each column
    torch.testing.assert_close(difference, difference[:1].expand_as(difference))
    assert difference.std() > 0.1  # popular candidates are pushed down more than rare ones
    assert torch.equal(plain[0][1], corrected[0][1])


def test_the_catalogue_softmax_scores_every_item_and_refreshes_its_bank(data, monkeypatch):
    X, text, llm = data
    calls = {"full": 0}
    original = Towers.encode_items

    def counting(self, items, progress=False):
        calls["full"] += len(items) == self.n_items
        return original(self, items, progress)

    monkeypatch.setattr(Towers, "encode_items", counting)
    rec = small(llm, negatives="catalogue", bank_refresh=2, max_train_samples=64, batch_size=16)
    steps = captured_scores(monkeypatch, rec, X, text)
    assert len(steps) == 4 and all(scores.shape == (16, rec.n_items_) for scores, _ in steps)
    assert all(int(target.max()) < rec.n_items_ for _, target in steps)  # targets are item indices
    # bank at steps 0 and 2, validation once, the final catalogue once
    assert calls["full"] == 2 + 1 + 1


def test_distillation_is_smallest_where_the_student_ranks_like_the_teacher():
    teacher = torch.tensor([[2.0, 0.5, -1.0, 0.0]])
    student = teacher.clone().requires_grad_(True)
    loss = trainer.distillation_loss(student, teacher, 1.0)
    loss.backward()
    torch.testing.assert_close(student.grad, torch.zeros_like(student.grad), atol=1e-6, rtol=0)
    entropy = -(torch.softmax(teacher, -1) * torch.log_softmax(teacher, -1)).sum()
    torch.testing.assert_close(loss.detach(), entropy)
    assert float(trainer.distillation_loss(-teacher, teacher, 1.0)) > float(loss)
    # a cold teacher is the plain cross-entropy on its best item
    sharp = trainer.distillation_loss(student.detach(), teacher, 1e-3)
    torch.testing.assert_close(sharp, torch.nn.functional.cross_entropy(teacher, torch.tensor([0])))


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_the_catalogue_teacher_is_the_backbones_own_ranking_of_each_sample(data, monkeypatch, temperature):
    X, text, llm = data
    rec = small(llm, negatives="catalogue", distill=1.0, distill_temperature=temperature, cooccurrence_teacher=0.0)
    steps = [(s, t * temperature) for s, t in captured_teachers(monkeypatch, rec, X, text)]  # logits / temperature
    assert len(steps) == 4 and all(t.shape == (16, rec.n_items_) for _, t in steps)
    # every teacher row is the backbone's score of one training history (a prefix of a user's sequence)
    sequences = rec.backbone_.train_sequences_
    histories = [seq[:end] for seq in (sequences.sequences(np.arange(rec.n_users_))) for end in range(1, len(seq))]
    reference = rec.backbone_.score_histories(histories)  # (all samples, n_items)
    for _, teacher in steps:
        distance = torch.cdist(teacher, reference).min(dim=1).values
        assert float(distance.max()) < 1e-3


def test_distillation_over_in_batch_candidates_takes_the_same_logq_correction(data, monkeypatch):
    X, text, llm = data
    plain = captured_teachers(monkeypatch, small(llm, negatives="in_batch", logq=False, distill=0.5), X, text)
    corrected = captured_teachers(monkeypatch, small(llm, negatives="in_batch", logq=True, distill=0.5), X, text)
    student_shift = plain[0][0] - corrected[0][0]
    teacher_shift = plain[0][1] - corrected[0][1]
    torch.testing.assert_close(teacher_shift, student_shift)
    assert plain[0][1].shape[1] < len(np.unique(X[:, 1]))  # the candidates only, not the catalogue


def test_distillation_changes_what_is_learned(data):
    X, text, llm = data
    plain, distilled = small(llm), small(llm, distill=1.0)
    plain.fit(X, item_text=text)
    distilled.fit(X, item_text=text)
    a, b = plain.towers_.aligner.state_dict(), distilled.towers_.aligner.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("negatives", ["in_batch", "catalogue"])
def test_an_extra_teacher_adds_its_logits_for_the_batchs_samples_and_candidates(data, monkeypatch, negatives):
    import functools

    import rarec._estimator as estimator

    X, text, llm = data
    calls = []

    def extra(rows, candidates):  # a bonus for item 0, and the rows and candidates it was asked about
        calls.append((np.asarray(rows).copy(), None if candidates is None else np.asarray(candidates).copy()))
        columns = np.arange(llm_items) if candidates is None else np.asarray(candidates)
        return torch.as_tensor(np.where(columns == 0, 5.0, 0.0))[None].expand(len(rows), -1)

    rec = small(llm, negatives=negatives, logq=False, distill=0.5)
    plain = captured_teachers(monkeypatch, rec, X, text)
    llm_items = rec.n_items_
    monkeypatch.setattr(estimator, "train_alignment", functools.partial(estimator.train_alignment,
                                                                        extra_teacher=extra))
    boosted = captured_teachers(monkeypatch, small(llm, negatives=negatives, logq=False, distill=0.5), X, text)
    assert len(calls) == len(boosted) == len(plain)
    for (_, before), (_, after), (rows, candidates) in zip(plain, boosted, calls):
        assert len(rows) == after.shape[0] and len(np.unique(rows)) == len(rows)  # one row per sample of the batch
        columns = np.arange(llm_items) if candidates is None else candidates
        assert (candidates is None) == (negatives == "catalogue") and after.shape[1] == len(columns)
        expected = before + torch.as_tensor(np.where(columns == 0, 5.0, 0.0), dtype=before.dtype)
        torch.testing.assert_close(after, expected)


@pytest.mark.parametrize("bad", [dict(negatives="sampled"), dict(logq=1),
                                 dict(bank_refresh=0), dict(distill=1.5), dict(distill_temperature=0.0)])
def test_objective_parameters_are_checked(data, bad):
    X, text, llm = data
    with pytest.raises(ValueError, match=next(iter(bad))):
        small(llm, **bad).fit(X, item_text=text)


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_id_dropout_gives_a_share_of_the_training_items_a_borrowed_id(data, monkeypatch, share):
    import dataclasses

    from rarec import _params
    from rarec.align import TwoTowerAligner

    X, text, llm = data
    borrowed_value = 7.0  # no CF embedding has this value everywhere
    monkeypatch.setattr(trainer, "borrowed_embeddings", lambda embeddings, *texts_and_neighbours: torch.full_like(
        embeddings, borrowed_value))
    original_config, original_encode = _params.alignment_config, TwoTowerAligner.encode
    monkeypatch.setattr(_params, "alignment_config",
                        lambda rec, progress: dataclasses.replace(original_config(rec, progress), id_dropout=share))
    rows = []

    def spy(self, llm_, tower, id_embeddings, *rest):
        if tower == "item" and self.training:  # the training steps (the bank and validation encode in eval mode)
            rows.append(id_embeddings.detach().cpu().reshape(len(id_embeddings), -1))
        return original_encode(self, llm_, tower, id_embeddings, *rest)

    monkeypatch.setattr(TwoTowerAligner, "encode", spy)
    small(llm, max_train_samples=64).fit(X, item_text=text)
    ids = torch.cat(rows)
    borrowed = (ids == borrowed_value).all(1)
    assert len(ids) > 100
    assert (ids[~borrowed] != borrowed_value).all()  # the others keep their own embedding
    if share in (0.0, 1.0):
        assert borrowed.all() if share else not borrowed.any()
    else:
        assert 0.3 < borrowed.float().mean() < 0.7


def test_id_dropout_keeps_an_item_s_own_text_factors(data, monkeypatch):
    import dataclasses

    import rarec._fit_steps as fit_steps
    from rarec import _params
    from rarec.align import TwoTowerAligner

    X, text, llm = data
    computed, given = [], []  # the text neighbours: computed once, for the factors' check and for id_dropout

    def count(texts):
        computed.append(original_nearest(texts))
        return computed[-1]

    def borrow(embeddings, texts, neighbours=None):
        given.append(neighbours)
        return torch.full_like(embeddings, 7.0)

    original_nearest = fit_steps.nearest_other_items
    monkeypatch.setattr(fit_steps, "nearest_other_items", count)
    monkeypatch.setattr(trainer, "borrowed_embeddings", borrow)
    monkeypatch.setattr(fit_steps, "validation_check", lambda *args: {"kept": True})
    original_config, original_encode = _params.alignment_config, TwoTowerAligner.encode
    monkeypatch.setattr(_params, "alignment_config",
                        lambda rec, progress: dataclasses.replace(original_config(rec, progress), id_dropout=1.0))
    rows = []

    def spy(self, llm_, tower, id_embeddings, *rest):
        if tower == "item" and self.training:
            rows.append(id_embeddings.detach().cpu().reshape(len(id_embeddings), -1))
        return original_encode(self, llm_, tower, id_embeddings, *rest)

    monkeypatch.setattr(TwoTowerAligner, "encode", spy)
    rec = small(llm, max_train_samples=32, text_factors=5).fit(X, item_text=text)
    ids = torch.cat(rows)
    assert rec.towers_.text_factors is not None and ids.shape[1] == rec.towers_.item_cf.shape[2]
    assert (ids[:, :-5] == 7.0).all()  # the CF part (and co-occurrence factors) borrowed
    assert (ids[:, -5:] != 7.0).any(1).all()  # the words are the item's own
    assert len(computed) == 1 and len(given) == 1 and given[0] is computed[0]


@pytest.mark.parametrize("negatives", ["in_batch", "catalogue"])
@pytest.mark.parametrize("borrowed_teacher", [False, True])
def test_the_borrowed_teacher_scores_borrowed_items_by_their_borrowed_id_vectors_in_both_stages(
        data, monkeypatch, negatives, borrowed_teacher):
    """Every item borrows one and the same ID vector (id_dropout 1): with ``borrowed_teacher`` the teacher gives
    every candidate of a sample the same score, in the prefixes' steps and the heads' alike (with the catalogue
    softmax the prefixes' steps drop the batch's own items only, so only the heads' are checked); without it, each
    item keeps its own CF score."""
    import dataclasses

    from rarec import _params

    X, text, llm = data
    monkeypatch.setattr(trainer, "borrowed_embeddings", lambda embeddings, *rest: torch.full_like(embeddings, 0.5))
    original_config = _params.alignment_config
    monkeypatch.setattr(_params, "alignment_config", lambda rec, progress: dataclasses.replace(
        original_config(rec, progress), id_dropout=1.0, borrowed_teacher=borrowed_teacher))
    encoded = []
    original_encode = Towers.encode
    monkeypatch.setattr(Towers, "encode", lambda self, tower, cf, *a, **k: encoded.append(
        (tower, bool((cf == 0.5).all()))) or original_encode(self, tower, cf, *a, **k))
    rec = small(llm, negatives=negatives, logq=False, distill=0.5, cooccurrence_teacher=0.0, head_epochs=2,
                head_hidden=0)
    teachers = [teacher for _, teacher in captured_teachers(monkeypatch, rec, X, text)]
    spread = torch.stack([(t.amax(1) - t.amin(1)).max() for t in teachers])
    heads_steps = 2 * -(-64 // 16)
    assert len(teachers) > heads_steps
    if borrowed_teacher:
        checked = spread if negatives == "in_batch" else spread[-heads_steps:]
        assert (checked < 1e-4).all()
        assert (spread[:-heads_steps] > 1e-3).all() or negatives == "in_batch"  # the bank keeps its own IDs
        assert ("item", True) in encoded  # the catalogue encoded once more with the borrowed vectors, for the heads
    else:
        assert (spread > 1e-3).all()
        assert ("item", True) not in encoded


def test_borrowed_teacher_rows_and_columns():
    neighbours = np.array([3, -1, 0, 2])
    rows, columns = trainer._borrowed_teacher_of(np.array([0, 1, 3]), np.array([0, 1]), neighbours, 4)
    assert rows.tolist() == [4, 5, 3]  # dropped items: their borrowed row, n_items further on
    assert columns.tolist() == [3, 1, 3]  # their neighbour's co-occurrence column, their own without a neighbour
    rows, columns = trainer._borrowed_teacher_of(None, np.array([2]), neighbours, 4)  # the whole catalogue
    assert rows.tolist() == [0, 1, 6, 3] and columns.tolist() == [0, 1, 0, 3]


def test_borrowed_embeddings_are_the_nearest_other_items_or_the_mean():
    from rarec.align._cold_items import borrowed_embeddings, nearest_other_items
    from rarec.data import ItemText

    texts = [ItemText("Red Planet"), ItemText("Blue Kitchen"), ItemText("Blue Kitchen Nights"), ItemText("nothing"),
             ItemText("Red Planet"), None]
    # an item is never its own neighbour; two items with one title are each other's
    np.testing.assert_array_equal(nearest_other_items(texts), [4, 2, 1, -1, 0, -1])
    embeddings = torch.arange(12.0).reshape(6, 2)
    expected = embeddings[[4, 2, 1, 0, 0, 0]].clone()
    expected[[3, 5]] = embeddings.mean(0)
    torch.testing.assert_close(borrowed_embeddings(embeddings, texts), expected)
    # only the known items (the rows of the table) are neighbours
    torch.testing.assert_close(borrowed_embeddings(embeddings[1:3], texts[1:]), embeddings[[2, 1]])


def test_forward_only_random_negatives_score_the_same_but_train_only_through_the_batch_s_targets(data, monkeypatch):
    from rarec.align import TwoTowerAligner

    X, text, llm = data
    original_encode = TwoTowerAligner.encode
    calls = []

    def spy(self, llm_, tower, id_embeddings, tokens, *rest):
        if tower == "item" and self.training:
            calls.append((torch.is_grad_enabled(), len(tokens)))
        return original_encode(self, llm_, tower, id_embeddings, tokens, *rest)

    monkeypatch.setattr(TwoTowerAligner, "encode", spy)
    seen = {}
    for live in (True, False):
        calls.clear()
        seen[live] = captured_scores(monkeypatch, small(llm, max_train_samples=32, n_random_negatives=24,
                                                        random_negative_gradients=live), X, text)
        seen[live, "calls"] = list(calls)
    # the first step: same seed, weights and candidates, so the same scores whichever way the extras are encoded
    torch.testing.assert_close(seen[True][0][0], seen[False][0][0])
    assert all(grad for grad, _ in seen[True, "calls"])
    frozen = [n for grad, n in seen[False, "calls"] if not grad]
    assert 0 < len(frozen) <= len(seen[False])  # at most one forward-only pass per step
    # the same candidates at every step (the random draws do not depend on how the extras are encoded)
    assert sum(n for _, n in seen[False, "calls"]) == sum(n for _, n in seen[True, "calls"])


def test_encode_candidates_keeps_the_order_and_sends_no_gradient_through_forward_only_rows(data):
    X, text, llm = data
    towers = small(llm, max_train_samples=16).fit(X, item_text=text).towers_
    module, items, frozen_llm = towers.aligner.train(), np.arange(6), towers.llm
    cf, tokens = towers.item_cf[items], [towers.item_tokens[i] for i in items]
    live = np.array([True, False, True, False, False, True])
    together = module.encode(frozen_llm, "item", cf, tokens).float()
    torch.testing.assert_close(trainer._encode_candidates(module, frozen_llm, cf, tokens, None, live), together)
    for rows, moved in ((~live, False), (live, True)):
        module.zero_grad()
        trainer._encode_candidates(module, frozen_llm, cf, tokens, None, live)[torch.as_tensor(rows)].sum().backward()
        grads = [p.grad for p in module.item_prefix.parameters() if p.grad is not None]
        assert any(g.abs().sum() > 0 for g in grads) == moved


def test_balance_id_blocks_scales_each_towers_inputs_and_the_saved_model_keeps_the_scales(data, monkeypatch, tmp_path):
    import rarec._fit_steps as fit_steps
    from rarec.align._projector import balanced_block_scales

    X, text, llm = data
    monkeypatch.setattr(fit_steps, "validation_check", lambda *args: {"kept": True})
    plain = small(llm, max_train_samples=32, text_factors=5).fit(X, item_text=text)
    assert all(torch.equal(p.input_scale, torch.ones(p.config.id_dim))
               for p in (plain.towers_.aligner.user_prefix, plain.towers_.aligner.item_prefix))
    plain.save(tmp_path / "plain")
    rec = small(llm, max_train_samples=32, text_factors=5, balance_id_blocks=True).fit(X, item_text=text)
    towers = rec.towers_
    widths = towers.id_block_widths()
    assert len(widths) == 3 and widths[1:] == [towers.factors.rank, 5]  # SASRec, EASE factors, text factors
    torch.testing.assert_close(towers.aligner.item_prefix.input_scale, balanced_block_scales(towers.item_cf, widths))
    assert not torch.equal(towers.aligner.user_prefix.input_scale, towers.aligner.item_prefix.input_scale)
    rec.save(tmp_path / "balanced")
    back = RARecommender.load(tmp_path / "balanced", llm=llm)
    torch.testing.assert_close(back.towers_.aligner.item_prefix.input_scale, towers.aligner.item_prefix.input_scale)
    assert np.array_equal(back.predict(rec.users_.ids), rec.predict(rec.users_.ids))
    from safetensors.torch import load_file  # a default fit's file holds no scales (format-7 readers load it)
    assert not any(k.endswith("input_scale") for f in (tmp_path / "plain").glob("*.safetensors") for k in load_file(f))
    assert any(k.endswith("input_scale") for f in (tmp_path / "balanced").glob("*.safetensors") for k in load_file(f))
    import json  # and only a file with scales says format 8, which older readers refuse
    assert [json.loads((tmp_path / name / "config.json").read_text())["format_version"]
            for name in ("plain", "balanced")] == [7, 8]
    import dataclasses

    from rarec import _params
    original = _params.alignment_config  # the research setting balance_id_columns (session 60)
    monkeypatch.setattr(_params, "alignment_config", lambda rec, progress: dataclasses.replace(
        original(rec, progress), balance_id_columns=True))
    columns = small(llm, max_train_samples=32, text_factors=5).fit(X, item_text=text).towers_
    torch.testing.assert_close(columns.aligner.item_prefix.input_scale,
                               balanced_block_scales(columns.item_cf, widths, columns=True))
    assert not torch.equal(columns.aligner.item_prefix.input_scale, towers.aligner.item_prefix.input_scale)
