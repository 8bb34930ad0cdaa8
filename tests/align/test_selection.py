import numpy as np
import pytest

from rarec.align._samples import AlignmentSamples, all_next_item_samples
from rarec.align._selection import content_words, select_alignment_samples, spread_budget
from rarec.data import ItemText, make_interactions


def rng(seed=0):
    return np.random.default_rng(seed)


def test_content_words_drop_stop_words_and_case():
    assert content_words(ItemText("The Return of the Jedi", ("Sci-Fi",))) == {"return", "jedi", "sci", "fi"}
    assert content_words(None) == frozenset()


def test_a_sample_sharing_no_word_with_its_history_is_removed():
    texts = [ItemText("Space Rocket"), ItemText("Rocket Garden"), ItemText("Jazz Trumpet"), None]
    sequences = [np.array([0, 1, 2, 3])]
    samples = all_next_item_samples(sequences)  # targets 1 (shares 'rocket'), 2 (shares nothing), 3 (no text)
    chosen, report = select_alignment_samples(samples, sequences, texts, 1.0, rng())
    assert chosen.targets.tolist() == [1, 3]
    assert report["removed_by_denoise"] == 1 and report["selected"] == 2


def test_without_text_denoising_is_skipped_with_a_warning():
    sequences = [np.array([0, 1, 2])]
    samples = all_next_item_samples(sequences)
    with pytest.warns(UserWarning, match="denoise step .* skipped"):
        chosen, report = select_alignment_samples(samples, sequences, None, 1.0, rng())
    assert len(chosen) == 2 and report["removed_by_denoise"] == 0


def test_every_cell_is_represented_and_the_budget_is_met():
    log, text = make_interactions(n_users=200, n_items=80, random_state=0)
    sequences = log.user_sequences()
    samples = all_next_item_samples(sequences)
    with pytest.warns(UserWarning):
        chosen, report = select_alignment_samples(samples, sequences, None, 0.1, rng(), n_user_buckets=3,
                                                  n_item_buckets=3)
    assert report["selected"] == len(chosen) == round(0.1 * len(samples))
    lengths = np.array([len(s) for s in sequences])
    user_edges = np.quantile(lengths[samples.users], [1 / 3, 2 / 3])
    buckets = set(np.searchsorted(user_edges, lengths[chosen.users], side="right").tolist())
    assert buckets == {0, 1, 2}
    assert report["cells"] >= 6


def test_same_seed_same_subset_and_random_fraction_one_keeps_all():
    log, text = make_interactions(n_users=100, n_items=60, random_state=1)
    sequences = log.user_sequences()
    samples = all_next_item_samples(sequences)
    texts = text.align(log.items)
    a, _ = select_alignment_samples(samples, sequences, texts, 0.1, rng(5))
    b, _ = select_alignment_samples(samples, sequences, texts, 0.1, rng(5))
    c, _ = select_alignment_samples(samples, sequences, texts, 0.1, rng(6))
    np.testing.assert_array_equal(a.ends, b.ends)
    np.testing.assert_array_equal(a.users, b.users)
    assert not (np.array_equal(a.users, c.users) and np.array_equal(a.ends, c.ends))
    everything, report = select_alignment_samples(samples, sequences, texts, 1.0, rng(), selection="random")
    assert len(everything) == len(samples) and report["removed_by_budget"] == 0


def test_spread_budget_hands_on_what_small_cells_cannot_use():
    assert spread_budget(np.array([1, 10, 10, 0]), 9).tolist() == [1, 4, 4, 0]
    assert spread_budget(np.array([2, 2]), 10).tolist() == [2, 2]
    assert spread_budget(np.array([5, 5, 5]), 7).sum() == 7


def test_bad_parameters():
    samples = AlignmentSamples(np.array([0]), np.array([1]), np.array([1]))
    with pytest.raises(ValueError, match="The 'sample_fraction' parameter"):
        select_alignment_samples(samples, [np.array([0, 1])], None, 0.0, rng())
    with pytest.raises(ValueError, match="The 'selection' parameter"):
        select_alignment_samples(samples, [np.array([0, 1])], None, 0.5, rng(), selection="best")


def test_denoising_that_would_remove_most_samples_is_skipped_with_the_counts():
    # Titles that share no words (artist names): every transition looks like noise to the word test.
    names = "Abba Beatles Coldplay Doors Eagles Fugees Genesis Heart Incubus Journey".split()
    texts = [ItemText(name) for name in names]
    sequences = [np.arange(10), np.arange(9, -1, -1)]
    samples = all_next_item_samples(sequences)
    with pytest.warns(UserWarning, match=r"would remove 18 of 18 candidate samples \(100%\).*skipped"):
        chosen, report = select_alignment_samples(samples, sequences, texts, 0.5, rng())
    assert report["removed_by_denoise"] == 0 and len(chosen) == 9  # the budget is met
    chosen, report = select_alignment_samples(samples, sequences, texts, 0.5, rng(), max_denoised_share=1.0)
    assert report["removed_by_denoise"] == 18 and len(chosen) == 0  # allowed to remove everything, it does


def test_denoising_that_leaves_less_than_the_budget_says_so():
    texts = [ItemText("Space Rocket"), ItemText("Rocket Garden"), ItemText("Jazz Trumpet"), None]
    sequences = [np.array([0, 1, 2, 3])]
    samples = all_next_item_samples(sequences)
    with pytest.warns(UserWarning, match="removed 1 of 3 candidate samples; 2 are left for a budget of 3"):
        select_alignment_samples(samples, sequences, texts, 1.0, rng())
