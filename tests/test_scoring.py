"""Score fusion helpers."""

import torch

from rarec._scoring import cf_scores, fuse, standardise


def test_standardise_gives_zero_mean_unit_spread_rows_and_keeps_the_order():
    scores = torch.tensor([[1.0, 5.0, 3.0], [10.0, 10.0, 10.0]])
    z = standardise(scores)
    torch.testing.assert_close(z.mean(1), torch.zeros(2))
    torch.testing.assert_close(z[0].std(), torch.tensor(1.0))
    assert torch.equal(z[0].argsort(), scores[0].argsort()) and torch.equal(z[1], torch.zeros(3))
    # a slice of a row, standardised with the whole row's moments, matches the same slice of the whole row
    torch.testing.assert_close(standardise(scores[:, :2], (scores.mean(1), scores.std(1))), z[:, :2])


def test_fuse_keeps_the_llm_score_at_weight_zero_and_adds_standardised_cf_scores():
    llm, cf = torch.randn(3, 7), torch.randn(3, 7) * 100
    assert fuse(llm, None, 0.0) is llm
    torch.testing.assert_close(fuse(llm, cf, 2.0), standardise(llm) + 2.0 * standardise(cf))


def test_cf_scores_take_the_best_interest():
    users = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one user, K=2
    items = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    torch.testing.assert_close(cf_scores(users, items), torch.tensor([[2.0, 3.0, 1.0]]))
