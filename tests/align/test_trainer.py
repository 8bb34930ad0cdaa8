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


def captured_scores(monkeypatch, rec, X, text):
    """The scores (and targets) the ranking loss sees at every step of ``rec.fit``."""
    seen, original = [], trainer.ranking_loss

    def spy(scores, target, loss):
        seen.append((scores.detach().clone(), target.clone()))
        return original(scores, target, loss)

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "ranking_loss", spy)
        rec.fit(X, item_text=text)
    return seen


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


@pytest.mark.parametrize("bad", [dict(negatives="sampled"), dict(logq=1),
                                 dict(bank_refresh=0)])
def test_objective_parameters_are_checked(data, bad):
    X, text, llm = data
    with pytest.raises(ValueError, match=next(iter(bad))):
        small(llm, **bad).fit(X, item_text=text)
