"""The co-occurrence teacher: the backbone's logits plus a scaled EASE score of each sample's whole history."""

import numpy as np
import pytest
import torch

import rarec.align._trainer as trainer
from rarec.align import all_next_item_samples
from rarec.align._cooccurrence_teacher import cooccurrence_teacher
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


def test_fit_trains_with_the_teacher_unless_it_is_off(monkeypatch):
    X, _, text = synthetic_split()
    llm = tiny_llm(text)
    given, original = [], trainer.distillation_loss

    def spy(scores, teacher, temperature):
        given.append(teacher.detach().clone())
        return original(scores, teacher, temperature)

    monkeypatch.setattr(trainer, "distillation_loss", spy)
    small(llm, cooccurrence_teacher=0.0).fit(X, item_text=text)
    plain, given[:] = list(given), []
    small(llm).fit(X, item_text=text)  # the default weight, 0.25
    assert len(plain) == len(given) > 0
    assert not all(torch.allclose(a, b) for a, b in zip(plain, given))
