"""Property-based tests (hypothesis) of the data layer, the splits, the metrics and chunked ranking."""

import numpy as np
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rarec._errors import DataFormatError
from rarec._topk import top_k
from rarec.data import IdIndex, InteractionLog
from rarec.metrics import full_ranking_metrics
from rarec.model_selection import leave_last_out

SETTINGS = settings(max_examples=60, deadline=None)


def _as_number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


int_ids = st.lists(st.integers(-10**12, 10**12), min_size=1, max_size=40, unique=True)
str_ids = st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=40, unique=True)


@SETTINGS
@given(st.one_of(int_ids, str_ids))
@example(["0", "+0"])
def test_id_index_encode_decode_round_trip(ids):
    try:
        index = IdIndex(ids)
    except DataFormatError:  # refused on purpose only when two strings write one number ("0" and "+0")
        assert len({_as_number(i) for i in ids} - {None}) < sum(_as_number(i) is not None for i in ids)
        return
    codes = index.encode(ids)
    assert codes.tolist() == list(range(len(ids)))
    assert index.decode(codes).tolist() == ids


@SETTINGS
@given(st.lists(st.one_of(st.integers(0, 30)), min_size=1, max_size=80))
def test_from_values_decodes_back_to_the_values(values):
    index, codes = IdIndex.from_values(values)
    assert index.decode(codes).tolist() == values
    assert sorted(index.ids.tolist()) == index.ids.tolist()  # independent of row order


logs = st.lists(st.tuples(st.integers(0, 8), st.integers(0, 15), st.floats(-1e6, 1e6, allow_nan=False)),
                min_size=1, max_size=120)


@SETTINGS
@given(logs, st.integers(1, 2), st.integers(0, 2))
def test_leave_last_out_partitions_the_log_without_leaking_the_future(rows, n_test, n_valid):
    log = InteractionLog.from_any(rows)
    split = leave_last_out(log, n_test=n_test, n_valid=n_valid)
    parts = [split.train, split.test] + ([split.valid] if split.valid is not None else [])

    def keyed(part):  # (user, item, time) triples with multiplicity
        return sorted(zip(part.users.decode(part.user_codes).tolist(), part.items.decode(part.item_codes).tolist(),
                          part.timestamps.tolist()))

    assert sorted(sum((keyed(p) for p in parts), [])) == keyed(log)  # every interaction in exactly one part
    for user in set(log.user_codes.tolist()):
        train = split.train.timestamps[split.train.user_codes == user]
        held = [p.timestamps[p.user_codes == user] for p in parts[1:]]
        assert len(train) > 0  # no user loses their whole history
        for times in held:
            assert not len(times) or train.max() <= times.min()  # nothing held out precedes training
        if split.valid is not None and len(held[0]) and len(held[1]):
            assert held[1].max() <= held[0].min()  # validation precedes test
        assert len(held[0]) in (0, n_test)


@SETTINGS
@given(st.integers(2, 12), st.integers(2, 30), st.integers(0, 2**31 - 1), st.sampled_from(["first", "pessimistic"]))
def test_metrics_are_bounded_and_ordered(n_users, n_items, seed, ties):
    rng = np.random.default_rng(seed)
    scores = torch.as_tensor(rng.integers(0, 4, (n_users, n_items)), dtype=torch.float32)  # many ties
    users = np.arange(n_users)
    test = InteractionLog(users, rng.integers(0, n_items, n_users), IdIndex(range(n_users), "user"),
                          IdIndex(range(n_items)), None)  # one held-out item per user, codes = score columns
    result = full_ranking_metrics(scores, test, ks=(1, 5, 10), metrics=("hr", "ndcg", "mrr", "recall"), ties=ties)
    for k in (1, 5, 10):
        hr, ndcg, mrr = result[f"hr@{k}"], result[f"ndcg@{k}"], result[f"mrr@{k}"]
        assert 0.0 <= mrr <= ndcg <= hr <= 1.0
    assert result["hr@1"] <= result["hr@5"] <= result["hr@10"]


@SETTINGS
@given(st.integers(1, 20), st.integers(1, 40), st.integers(1, 45), st.floats(1e-5, 0.01), st.integers(0, 2**31 - 1))
def test_chunked_top_k_equals_one_dense_block(n_rows, n_items, k, memory_mb, seed):
    rng = np.random.default_rng(seed)
    scores = torch.as_tensor(rng.standard_normal((n_rows, n_items)), dtype=torch.float32)
    exclude = [rng.choice(n_items, rng.integers(0, n_items + 1), replace=False) for _ in range(n_rows)]

    def block(rows, items):
        return scores[rows][:, items]

    chunked = top_k(block, n_rows, n_items, k, exclude, memory_mb=memory_mb)
    dense = top_k(block, n_rows, n_items, k, exclude, memory_mb=1024)
    torch.testing.assert_close(chunked[0], dense[0])
    finite = torch.isfinite(dense[0])
    assert torch.equal(chunked[1][finite], dense[1][finite])
    for row, banned in enumerate(exclude):
        assert not set(dense[1][row][finite[row]].tolist()) & set(banned.tolist())
