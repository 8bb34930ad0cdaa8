"""The co-occurrence teacher: the backbone's logits plus a scaled EASE score of each sample's whole history."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import rarec.align._trainer as trainer
from rarec.align._trainer import distillation_loss
from rarec.align import all_next_item_samples
from rarec.align._cooccurrence_teacher import CooccurrenceTeacher, cooccurrence_teacher, validation_check
from rarec.cf import EASE

from rarec.testing import tiny_llm

from ..test_estimator import small, synthetic_split


def test_the_teacher_adds_ease_scores_of_the_whole_history_in_units_of_the_backbone_spread():
    sequences = [np.array([0, 1, 2, 3, 1]), np.array([2, 4, 0]), np.array([3, 0, 1, 4])]
    samples = all_next_item_samples(sequences)
    rng = np.random.default_rng(0)
    backbone_table = torch.as_tensor(rng.normal(size=(len(samples), 5)), dtype=torch.float32)
    backbone = lambda rows: backbone_table[rows]  # noqa: E731
    quarter = cooccurrence_teacher(0.25, sequences, samples, backbone, 5)
    half = cooccurrence_teacher(0.5, sequences, samples, backbone, 5)
    rows, candidates = np.array([1, 4]), np.array([0, 3])
    torch.testing.assert_close(half(rows, candidates), 2 * quarter(rows, candidates))
    torch.testing.assert_close(quarter(rows, None)[:, candidates], quarter(rows, candidates))
    ease = EASE().fit(sequences, 5)
    histories = [sequences[u][:e] for u, e in zip(samples.users[rows], samples.ends[rows])]
    raw = ease.score(histories)  # the whole history before the target
    every = ease.score([sequences[u][:e] for u, e in zip(samples.users, samples.ends)])
    scale = 0.25 * float(backbone_table.std(1).mean()) / float(every.std(1).mean())  # fewer than 1,000 samples
    torch.testing.assert_close(quarter(rows, None), raw * scale, atol=1e-5, rtol=1e-4)


def test_a_catalogue_too_large_for_ease_distils_the_backbone_alone(monkeypatch):
    monkeypatch.setattr(EASE, "MAX_ITEMS", 3)
    sequences = [np.array([0, 1, 2, 3])]
    with pytest.warns(UserWarning, match="more than EASE's 3"):
        assert cooccurrence_teacher(0.25, sequences, all_next_item_samples(sequences), None, 4) is None


def test_a_given_fitted_ease_is_used_as_it_is_and_must_know_the_catalogue(monkeypatch):
    sequences = [np.array([0, 1, 2, 3, 1]), np.array([2, 4, 0]), np.array([3, 0, 1, 4])]
    samples = all_next_item_samples(sequences)
    backbone = lambda rows: torch.ones(len(rows), 5) + torch.arange(5.0)  # noqa: E731
    elsewhere = EASE(l2=1.0).fit([np.array([0, 4]), np.array([0, 4]), np.array([1, 2])], 5)  # other histories
    fits = []
    monkeypatch.setattr(EASE, "fit", lambda self, *a: fits.append(a) or self)
    given = cooccurrence_teacher(1.0, sequences, samples, backbone, 5, ease=elsewhere)
    assert given.ease is elsewhere and not fits  # not refitted on the fit's sequences
    rows = np.arange(len(samples))
    torch.testing.assert_close(given(rows, None), elsewhere.score(given.histories) * given.scale)
    with pytest.raises(ValueError, match="same item index"):
        cooccurrence_teacher(1.0, sequences, samples, backbone, 6, ease=elsewhere)


def test_the_check_keeps_the_teacher_only_where_it_ranks_validation_items_better():
    # items 0-1 and 2-3 always come together; each user's validation item is the partner of their history's item
    sequences = [np.array([u % 2 * 2]) for u in range(40)] + [np.array([0, 1]), np.array([2, 3])] * 10
    held_out = sp.csr_matrix((np.ones(40), (np.arange(40), [u % 2 * 2 + 1 for u in range(40)])), shape=(60, 5))
    rng = np.random.default_rng(0)
    teacher = cooccurrence_teacher(1.0, sequences, all_next_item_samples(sequences),
                                   lambda rows: torch.as_tensor(rng.normal(size=(len(rows), 5))), 5)

    def noise(histories, users):  # a backbone that knows nothing: random scores
        return torch.as_tensor(rng.normal(size=(len(users), 5)), dtype=torch.float32) * 1e-3

    def oracle(histories, users):  # a backbone that puts every validation item first
        return torch.as_tensor(held_out[users].toarray() * 100.0)

    helped = teacher.validation_check(sequences, held_out, noise)
    assert helped["kept"] and helped["valid_ndcg@10_with_teacher"] == 1.0 > helped["valid_ndcg@10_backbone"]
    perfect = teacher.validation_check(sequences, held_out, oracle)  # a tie at 1.0 is no reason to add it
    assert not perfect["kept"] and perfect["valid_ndcg@10_backbone"] == 1.0


def test_the_check_with_neighbours_also_ranks_the_validation_items_as_if_added_after_fit():
    # each user's validation item is the text partner (0-1, 2-3) of their history's item; the backbone knows them
    # all, but an item added after fit borrows its partner's score, which is noise
    sequences = [np.array([u % 2 * 2]) for u in range(40)]
    held_out = sp.csr_matrix((np.ones(40), (np.arange(40), [u % 2 * 2 + 1 for u in range(40)])), shape=(40, 5))
    noise = torch.as_tensor(np.random.default_rng(0).normal(size=(40, 5)), dtype=torch.float32)

    def oracle(histories, users):  # every validation item first; the rest noise
        return torch.as_tensor(held_out[users].toarray() * 100.0, dtype=torch.float32) + noise[users]

    def words(histories, seen):  # the history's text partner
        partner = torch.zeros(len(histories), 5)
        partner[torch.arange(len(histories)), torch.as_tensor([int(h[-1]) ^ 1 for h in histories])] = 50.0
        return partner

    plain = validation_check(sequences, held_out, oracle, words, "text_factors")
    assert not plain["kept"] and "valid_ndcg@10_as_added_backbone" not in plain  # a tie at 1.0
    both = validation_check(sequences, held_out, oracle, words, "text_factors", np.array([1, 0, 3, 2, -1]))
    assert both["kept"] and both["valid_ndcg@10_backbone"] == both["valid_ndcg@10_with_text_factors"] == 1.0
    assert both["valid_ndcg@10_as_added_backbone"] < 1.0 == both["valid_ndcg@10_as_added_with_text_factors"]
    # words that push each validation item down are not kept
    hurt = validation_check(sequences, held_out, lambda h, u: oracle(h, u) * 0.01, lambda h, s: -words(h, s),
                            "text_factors", np.array([1, 0, 3, 2, -1]))
    assert not hurt["kept"] and hurt["valid_ndcg@10_with_text_factors"] < hurt["valid_ndcg@10_backbone"]
    alone = validation_check(sequences, held_out, oracle, words, "text_factors", np.full(5, -1))
    assert alone == plain  # no validation item has a neighbour: the known items alone decide


def test_the_check_scores_users_in_batches_with_the_same_result(monkeypatch):
    import rarec.align._cooccurrence_teacher as module

    sequences = [np.array([u % 2 * 2]) for u in range(40)] + [np.array([0, 1]), np.array([2, 3])] * 10
    held_out = sp.csr_matrix((np.ones(40), (np.arange(40), [u % 2 * 2 + 1 for u in range(40)])), shape=(60, 5))
    table = torch.as_tensor(np.random.default_rng(0).normal(size=(60, 5)), dtype=torch.float32)
    teacher = cooccurrence_teacher(0.1, sequences, all_next_item_samples(sequences), lambda rows: table[rows], 5)
    calls = []

    def backbone(histories, users):
        calls.append(len(users))
        return table[users]

    whole = teacher.validation_check(sequences, held_out, backbone)
    assert max(calls) == 40
    calls.clear()
    monkeypatch.setattr(module, "_CHECK_BATCH", 7)
    assert teacher.validation_check(sequences, held_out, backbone) == whole and max(calls) == 7


def teachers_given(monkeypatch, X, text, llm, **params):
    """The distillation teachers a small fit trains against (one tensor per step), and the fit."""
    given = []

    def spy(scores, teacher, temperature):
        given.append(teacher.detach().clone())
        return distillation_loss(scores, teacher, temperature)

    monkeypatch.setattr(trainer, "distillation_loss", spy)
    rec = small(llm, **params).fit(X, item_text=text)
    return given, rec


@pytest.mark.parametrize("kept", [True, False])
def test_fit_trains_with_the_teacher_only_when_it_is_on_and_passes_its_check(monkeypatch, kept):
    X, _, text = synthetic_split()
    llm = tiny_llm(text)
    plain, rec = teachers_given(monkeypatch, X, text, llm, cooccurrence_teacher=0.0, cooccurrence_factors=0)
    assert "cooccurrence_teacher" not in rec.training_log_[0]
    monkeypatch.setattr(CooccurrenceTeacher, "validation_check",
                        lambda self, *args: {"valid_ndcg@10_backbone": 0.5, "valid_ndcg@10_with_teacher": 0.6,
                                             "kept": kept})
    given, rec = teachers_given(monkeypatch, X, text, llm, cooccurrence_factors=0)  # the default weight, 0.25
    assert rec.training_log_[0]["cooccurrence_teacher"]["kept"] is kept
    assert len(plain) == len(given) > 0
    assert all(torch.equal(a, b) for a, b in zip(plain, given)) is not kept


def test_the_check_runs_on_the_fit_s_own_validation_items():
    X, _, text = synthetic_split()
    rec = small(tiny_llm(text), cooccurrence_factors=0).fit(X, item_text=text)
    check = rec.training_log_[0]["cooccurrence_teacher"]
    assert set(check) == {"valid_ndcg@10_backbone", "valid_ndcg@10_with_teacher", "kept"}
    assert check["kept"] == (check["valid_ndcg@10_with_teacher"] > check["valid_ndcg@10_backbone"])
    assert 0 < check["valid_ndcg@10_backbone"] < 1
