"""The splits behind the benchmark figures: what each benchmark holds out and ranks is what its page says."""

import contextlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rarec.cf import EASE
from rarec.data import make_interactions
from rarec.model_selection import leave_last_out

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
cold_items = pytest.importorskip("cold_items")
objective_study = pytest.importorskip("objective_study")


@pytest.fixture(scope="module")
def log():
    return make_interactions(n_users=200, n_items=80, random_state=0).interactions


def test_cold_split_keeps_every_cold_interaction_out_of_training(log):
    train, test, cold = cold_items.cold_split(log, 0.10, seed=0)
    assert len(cold) == 8 and train.n_items == log.n_items  # the catalogue is not shrunk
    assert not np.isin(train.item_codes, cold).any()
    sequences = log.user_sequences()
    expected = [u for u, s in enumerate(sequences) if s[-1] in set(cold)]
    assert test[:, 0].tolist() == expected and np.isin(test[:, 1], cold).all()
    assert all(test[i, 1] == sequences[u][-1] for i, u in enumerate(expected))


def test_validation_split_holds_out_warm_items_and_never_the_test_cold_ones(log):
    train, _, cold = cold_items.cold_split(log, 0.10, seed=0)
    inner, pairs, held = cold_items.validation_split(train, 0.10)
    assert len(held) == len(cold) and not np.isin(held, cold).any()  # drawn among the warm items
    assert not np.isin(inner.item_codes, np.concatenate([cold, held])).any()
    assert np.isin(pairs[:, 1], held).all() and len(pairs) > 0


def test_id_vector_rows_rank_a_cold_item_by_its_neighbour_s_ids_and_its_own_words(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from rarec.align._cold_items import nearest_known_items

    data, log, texts, (train, pairs, cold), test = tiny_cold_split(monkeypatch)
    seen, original = {}, cold_items.full_ranking_metrics

    def spy(scorer, held_out, exclude, **kwargs):
        seen.update(scorer=scorer, held_out=held_out)
        return original(scorer, held_out, exclude, **kwargs)
    monkeypatch.setattr(cold_items, "full_ranking_metrics", spy)
    args = SimpleNamespace(data=tmp_path, cache=tmp_path / "cf", text_rank=4, text_weight=0.5)
    warm, warm_text, cold_text = cold_items.warm_catalogue(train, texts, cold)
    all_text = [warm_text.get(i) for i in warm.items.decode(np.arange(warm.n_items))] + list(cold_text.values())
    nearest = nearest_known_items(all_text, warm.n_items)
    columns = {}
    for name in ("id_vectors", "id_vectors_text_factors"):
        row = cold_items.id_vectors_row(name, train, test, texts, cold, args)
        held = seen["held_out"]
        assert held.shape[1] == warm.n_items + len(cold_text) and (held.indices >= warm.n_items).all()
        assert held.nnz == len(row["per_user"]["users"]) > 0 and 0.0 <= row["hr@10"] <= 1.0
        scores = seen["scorer"](np.unique(held.nonzero()[0])).numpy()
        columns[name] = scores[:, warm.n_items:], scores[:, nearest]
    # without words a cold item scores as the warm item it borrows from; its own words set it apart
    assert np.allclose(*columns["id_vectors"], atol=1e-5)
    assert not np.allclose(*columns["id_vectors_text_factors"], atol=1e-5)
    assert (row["text_rank"], row["text_weight"]) == (4, 0.5)
    assert "SASRec + 4 text factors at weight 0.5" in cold_items.label(row["row"], [row])
    assert "cold_scale" not in row
    users = np.unique(seen["held_out"].nonzero()[0])
    plain = seen["scorer"](users).numpy()
    args.cold_scale = (2.0, 2.0)  # cold_borrowing.py --scales: the cold items' columns scale, the warm ones stay
    scaled_row = cold_items.id_vectors_row("id_vectors_text_factors", train, test, texts, cold, args)
    scaled = seen["scorer"](users).numpy()
    assert scaled_row["cold_scale"] == [2.0, 2.0]
    assert np.allclose(scaled[:, :warm.n_items], plain[:, :warm.n_items], atol=1e-5)
    assert np.allclose(scaled[:, warm.n_items:], 2 * plain[:, warm.n_items:], atol=1e-4)


def test_tfidf_scorer_ranks_items_sharing_words_with_the_history_first(log):
    from rarec.data import ItemText

    texts = [ItemText(f"item {i}", ("red shoes",) if i < 5 else ("blue hats",)) for i in range(log.n_items)]
    history = log.subset(np.isin(log.item_codes, [0, 1]))
    user = int(history.user_codes[0])
    scores = cold_items.tfidf_scorer(history, texts)([user])[0].numpy()
    assert scores[:5].min() > scores[5:].max()


def test_user_subset_keeps_the_id_maps_and_only_the_chosen_users(log):
    split = leave_last_out(log, n_valid=0)
    part = objective_study.user_subset(split, 50)
    assert part.train.users is split.train.users and part.train.items is split.train.items
    users = np.unique(part.train.user_codes)
    assert len(users) == 50 and set(np.unique(part.test.user_codes)) == set(users)
    assert len(part.train) == np.isin(split.train.user_codes, users).sum()
    assert objective_study.user_subset(split, None) is split
    assert np.array_equal(np.unique(objective_study.user_subset(split, 50).train.user_codes), users)  # seeded


def test_aligned_users_adds_others_to_the_evaluated_users_with_all_their_training_items(log):
    split = leave_last_out(log, n_valid=0)
    part = objective_study.user_subset(split, 30)
    wider = objective_study.aligned_users(part.train, split.train, 50)
    evaluated, aligned = np.unique(part.train.user_codes), np.unique(wider.user_codes)
    assert len(aligned) == 50 and set(evaluated) <= set(aligned)
    assert len(wider) == np.isin(split.train.user_codes, aligned).sum()
    assert np.array_equal(np.unique(objective_study.aligned_users(part.train, split.train, 50).user_codes), aligned)
    with pytest.raises(ValueError, match="every user's training log"):
        objective_study.aligned_users(part.train, None, 50)
    assert objective_study.validated_on([{"aligned_users": 8000}]) == " (8,000 users)"
    assert objective_study.validated_on([{}]) == ""  # validated on the evaluated users: nothing to add


def test_more_users_variants_keep_the_names_their_results_are_stored_under():
    prefix = "default + EASE and TF-IDF factors on every user, ID blocks balanced, "
    cuts = ", 16-token prompts, forward-only random negatives"
    short = prefix + "80,000 samples of 16,000 users, bf16" + cuts
    short_fp32 = prefix + "40,000 samples of 8,000 users, fp32" + cuts
    heads_64 = prefix + "80,000 samples of 16,000 users, fp32" + cuts + ", head batch 64"
    heads_64_bf16 = prefix + "80,000 samples of 16,000 users, bf16" + cuts + ", head batch 64"
    assert objective_study.ALIGN_USERS == {prefix + "40,000 samples of 8,000 users, bf16": 8000,
                                           prefix + "80,000 samples of 16,000 users, bf16": 16000, short: 16000,
                                           short_fp32: 8000, heads_64: 16000, heads_64_bf16: 16000}
    for name, samples in zip(objective_study.ALIGN_USERS, (40_000, 80_000, 80_000, 40_000, 80_000, 80_000)):
        params = objective_study.VARIANTS[name]
        dtype = "float32" if name in (short_fp32, heads_64) else "bfloat16"
        assert (params["max_train_samples"], params["sample_fraction"], params["llm_dtype"]) == (samples, 1.0, dtype)
        assert params.get("max_prompt_tokens", 64) == (16 if cuts in name else 64)
        heads = (64, 4e-4) if name in (heads_64, heads_64_bf16) else (None, None)
        assert (params.get("head_batch_size"), params.get("head_lr")) == heads
        assert params["balance_id_blocks"] and params.get("random_negative_gradients", True) == (cuts not in name)
        assert (params["cooccurrence_l2"], params["text_factors"], params["text_factor_weight"]) == (50.0, 512, 0.25)
        assert name in objective_study.FACTORS_ON_EVERYONE and name not in objective_study.ALIGNMENT_OVERRIDES


def tiny_cold_split(monkeypatch):
    """(data, log, texts, (train, test pairs, cold items), test log) of a tiny catalogue, and a tiny shared SASRec."""
    data = make_interactions(n_users=60, n_items=40, random_state=1)
    log = data.interactions
    split = cold_items.cold_split(log, 0.10, seed=0)
    monkeypatch.setitem(objective_study.SETTINGS, "sasrec", (dict(dim=8, n_layers=1, n_heads=1, inner_dim=8),
                                                            dict(batch_size=32, epochs=1)))
    return data, log, data.item_text.align(log.items), split, cold_items.as_log(split[1], log)


def test_cold_item_llm_row_ranks_the_cold_items_it_adds(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from rarec.testing import tiny_llm

    data, log, texts, (train, pairs, cold), test = tiny_cold_split(monkeypatch)
    args = SimpleNamespace(users=30, device="cpu", data=tmp_path, llm=tiny_llm(data.item_text), cache=tmp_path / "cf")
    row = cold_items.llm_row("rarec", 0, train, test, texts, cold, args)
    assert row["users"] == 30 and 0.0 <= row["hr@100"] <= 1.0
    assert row["hr@100"] == 1.0  # 40 items: every cold item is within the top 100
    # per-user metrics under the test users' ids, sorted, so that rows pair user by user with TF-IDF's
    assert row["per_user"]["users"] == sorted(log.users.decode(pairs[:, 0]).tolist())
    assert np.mean(row["per_user"]["ndcg@10"]) == pytest.approx(row["ndcg@10"])
    # with --checkpoints the fit writes its own folder, and running the row again resumes from it: the same row
    args.checkpoints = tmp_path / "checkpoints"
    fits, original = [], cold_items.RARecommender.fit
    monkeypatch.setattr(cold_items.RARecommender, "fit",
                        lambda self, *a, resume=False, **k: fits.append(resume) or original(self, *a, resume=resume, **k))
    first = cold_items.llm_row("rarec", 0, train, test, texts, cold, args)
    (folder,) = args.checkpoints.iterdir()
    assert folder.name == "test_rarec_seed0_users30_dropout0" and (folder / "latest.json").exists()
    again = cold_items.llm_row("rarec", 0, train, test, texts, cold, args)
    assert fits == [False, True] and again["per_user"] == first["per_user"] == row["per_user"]


def test_cold_item_text_teacher_row_trains_with_id_dropout_and_the_tfidf_teacher(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from rarec.testing import tiny_llm

    data = make_interactions(n_users=60, n_items=40, random_state=1)
    log = data.interactions
    train, pairs, cold = cold_items.cold_split(log, 0.10, seed=0)
    monkeypatch.setitem(objective_study.SETTINGS, "sasrec", (dict(dim=8, n_layers=1, n_heads=1, inner_dim=8),
                                                            dict(batch_size=32, epochs=1)))
    teachers, original = [], objective_study.tfidf_teacher
    monkeypatch.setattr(objective_study, "tfidf_teacher",
                        lambda *args: teachers.append(args[-1]) or original(*args))
    args = SimpleNamespace(users=30, device="cpu", data=tmp_path, llm=tiny_llm(data.item_text), cache=tmp_path / "cf",
                           id_dropout=0.5)
    row = cold_items.llm_row("rarec_text_teacher", 0, train, cold_items.as_log(pairs, log),
                             data.item_text.align(log.items), cold, args)
    assert teachers == [cold_items.TEXT_TEACHER] and (row["id_dropout"], row["text_teacher"]) == (0.5, 0.25)
    assert "ID dropout (50%) and a text-aware teacher (SASRec + 0.25 × TF-IDF)" in cold_items.label(row["row"], [row])


def test_cold_item_paired_table_sets_each_llm_row_against_tfidf_user_by_user():
    users = [3, 5, 8, 9]
    tfidf = {"users": users, "hr@100": [1.0, 0.0, 0.0, 1.0], "ndcg@10": [0.5, 0.0, 0.0, 0.0]}
    seeds = [{"users": users, "hr@100": [1.0, 1.0, 0.0, 1.0], "ndcg@10": [0.5, 0.0, 0.0, 0.0]},
             {"users": users, "hr@100": [1.0, 1.0, 1.0, 1.0], "ndcg@10": [0.5, 0.0, 0.0, 0.0]}]
    result = {"rows": [{"row": "tfidf", "seed": 0, "per_user": tfidf},
                       {"row": "rarec", "seed": 0}]  # a row from before per-user metrics: left out
              + [{"row": "rarec", "seed": s, "per_user": p} for s, p in enumerate(seeds, 1)]}
    (line,) = [row for row in cold_items.paired_lines(result) if row.startswith("| RA-Rec")]
    # HR@100: 0.875 against 0.5; per user (seeds averaged) +0, +1, +0.5, +0 -> mean 0.375; 2 better, 0 worse
    assert "| 2 | 1.75× | +0.3750 ± 0.2394 | +0.0000 ± 0.0000 | 2 / 0 |" in line
    assert cold_items.paired_lines({"rows": [{"row": "tfidf", "seed": 0, "per_user": tfidf}]}) == []


def test_cold_item_tables_keep_each_text_factor_setting_on_a_line_of_its_own():
    users = [1, 2]
    tfidf = {"users": users, "hr@100": [1.0, 0.0], "ndcg@10": [0.5, 0.0]}
    rows = [{"row": "tfidf", "seed": 0, "seconds": 1.0, "per_user": tfidf, "hr@10": 0.5, "ndcg@10": 0.25,
             "hr@100": 0.5, "ndcg@100": 0.25}]
    for weight, hit in ((0.5, 1.0), (0.25, 0.0)):
        per_user = {"users": users, "hr@100": [1.0, hit], "ndcg@10": [0.5, 0.0]}
        rows.append({"row": "id_vectors_text_factors", "seed": 0, "seconds": 1.0, "text_rank": 8,
                     "text_weight": weight, "per_user": per_user, "hr@10": 0.5, "ndcg@10": 0.25,
                     "hr@100": (1.0 + hit) / 2, "ndcg@100": 0.25})
    result = {"rows": rows, "machine": "m", "cold_items": 4, "items": 40, "test_users": 2}
    table = cold_items.render(result)
    row = "SASRec + 8 text factors at weight 0.25 (what the text-factor row distils) | 1 | 0.5000 | 0.2500 | 0.5000 |"
    assert row in table
    (low,) = [line for line in cold_items.paired_lines(result) if "weight 0.25" in line]
    (high,) = [line for line in cold_items.paired_lines(result) if "weight 0.5" in line]
    assert "| 1 | 1.00× |" in low and "| 1 | 2.00× |" in high  # each against TF-IDF's 0.5, not averaged
    assert table.index("weight 0.25") < table.index("weight 0.5")


def test_cold_item_table_marks_a_resumed_row_s_wall_time_as_the_resumed_run_s_only():
    rows = [{"row": "tfidf", "seed": 0, "seconds": 2.0, "hr@10": 0.5, "ndcg@10": 0.25, "hr@100": 0.5,
             "ndcg@100": 0.25}]
    result = {"rows": rows, "machine": "m", "cold_items": 4, "items": 40, "test_users": 2}
    assert "resumed" not in cold_items.render(result)
    rows.append({"row": "rarec_text_factors", "seed": 0, "seconds": 408.0, "text_rank": 8, "text_weight": 0.5,
                 "epochs": 2, "resumed": True, "hr@10": 0.5, "ndcg@10": 0.25, "hr@100": 0.5, "ndcg@100": 0.25})
    table = cold_items.render(result)
    assert "2 alignment epochs | 1 | 0.5000 | 0.2500 | 0.5000 | 0.2500 | 408 (resumed) |" in table
    assert "counts only the run that finished the fit from a checkpoint" in table


def test_cold_item_llm_row_with_more_id_tokens_keeps_its_own_checkpoint_and_table_line(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from rarec.testing import tiny_llm

    data, log, texts, (train, pairs, cold), test = tiny_cold_split(monkeypatch)
    args = SimpleNamespace(users=30, device="cpu", data=tmp_path, llm=tiny_llm(data.item_text), cache=tmp_path / "cf",
                           id_tokens=2, checkpoints=tmp_path / "checkpoints")
    fitted, original = [], cold_items.RARecommender.fit
    monkeypatch.setattr(cold_items.RARecommender, "fit",
                        lambda self, *a, **k: fitted.append(self.n_id_tokens) or original(self, *a, **k))
    row = cold_items.llm_row("rarec", 0, train, test, texts, cold, args)
    (folder,) = args.checkpoints.iterdir()
    assert fitted == [2] and row["n_id_tokens"] == 2 and folder.name.endswith("_idtokens2")
    one = dict(row, n_id_tokens=1)
    assert cold_items.setting(row) != cold_items.setting(one)
    row["users"] = cold_items.PRESET_USERS  # the tiny fit's 30; the label would name any other count last
    assert cold_items.label("rarec", [row]).endswith(", 2 ID tokens per vector")
    assert "ID tokens" not in cold_items.label("rarec", [one])


def test_cold_item_llm_row_with_more_samples_trains_on_them_and_keeps_its_own_checkpoint_and_line(tmp_path,
                                                                                                    monkeypatch):
    from types import SimpleNamespace

    from rarec.testing import tiny_llm

    data, log, texts, (train, pairs, cold), test = tiny_cold_split(monkeypatch)
    base = dict(users=30, device="cpu", data=tmp_path, llm=tiny_llm(data.item_text), cache=tmp_path / "cf",
                checkpoints=tmp_path / "checkpoints")
    fitted, original = [], cold_items.RARecommender.fit
    monkeypatch.setattr(cold_items.RARecommender, "fit", lambda self, *a, **k: fitted.append(
        (self.max_train_samples, self.sample_fraction)) or original(self, *a, **k))
    more = cold_items.llm_row("rarec", 0, train, test, texts, cold, SimpleNamespace(samples=64, **base))
    row = cold_items.llm_row("rarec", 0, train, test, texts, cold, SimpleNamespace(**base))
    (big, big_fraction), (default, fraction) = fitted
    assert (big, default) == (64, cold_items.DEFAULT_SAMPLES) and more["max_train_samples"] == 64
    assert big_fraction == pytest.approx(min(1.0, fraction * 64 / cold_items.DEFAULT_SAMPLES))
    assert "max_train_samples" not in row  # the default row's setting and folder are as before
    plain = cold_items.checkpoint_folder(SimpleNamespace(**base), "rarec", 0, 0.0, {})
    assert {folder.name for folder in base["checkpoints"].iterdir()} == {plain.name, plain.name + "_samples64"}
    assert cold_items.setting(more) != cold_items.setting(row)
    more["users"] = cold_items.PRESET_USERS  # the tiny fit's 30; the label would name any other count last
    assert cold_items.label("rarec", [more]).endswith(", 64 prefix-training samples")
    assert "samples" not in cold_items.label("rarec", [row])


def test_cold_item_llm_row_in_bfloat16_fits_its_llm_in_it_and_keeps_its_own_checkpoint_and_line(tmp_path,
                                                                                                 monkeypatch):
    from types import SimpleNamespace

    from rarec.testing import tiny_llm

    data, log, texts, (train, pairs, cold), test = tiny_cold_split(monkeypatch)
    base = dict(users=30, device="cpu", data=tmp_path, llm=tiny_llm(data.item_text), cache=tmp_path / "cf",
                checkpoints=tmp_path / "checkpoints")
    fitted = []

    def record(self, *args, **kwargs):
        fitted.append(self.llm_dtype)
        raise StopBeforeFit

    monkeypatch.setattr(cold_items.RARecommender, "fit", record)
    for dtype in ("bfloat16", None):
        with pytest.raises(StopBeforeFit):
            cold_items.llm_row("rarec", 0, train, test, texts, cold,
                               SimpleNamespace(**base, **({"llm_dtype": dtype} if dtype else {})))
    assert fitted == ["bfloat16", "auto"]
    plain = cold_items.checkpoint_folder(SimpleNamespace(**base), "rarec", 0, 0.0, {})
    half = cold_items.checkpoint_folder(SimpleNamespace(llm_dtype="bfloat16", **base), "rarec", 0, 0.0, {})
    assert half.name == plain.name + "_bfloat16"  # the fp32 row's folder is as before
    row = {"row": "rarec", "seed": 0, "llm_dtype": "bfloat16"}
    assert cold_items.setting(row) != cold_items.setting({"row": "rarec", "seed": 0})
    assert cold_items.label("rarec", [row]).endswith(", LLM in bfloat16")
    assert "LLM in" not in cold_items.label("rarec", [{"row": "rarec", "seed": 0}])


def test_cold_item_llm_row_with_the_cheap_estimator_options_fits_with_them_and_keeps_its_own_checkpoint_and_line(
        tmp_path, monkeypatch):
    from types import SimpleNamespace

    from rarec.testing import tiny_llm

    data, log, texts, (train, pairs, cold), test = tiny_cold_split(monkeypatch)
    base = dict(users=30, device="cpu", data=tmp_path, llm=tiny_llm(data.item_text), cache=tmp_path / "cf",
                checkpoints=tmp_path / "checkpoints")
    cheap = dict(max_prompt_tokens=16, head_batch_size=64, head_lr=4e-4)
    fitted = []

    def record(self, *args, **kwargs):
        fitted.append((self.max_prompt_tokens, self.head_batch_size, self.head_lr))
        raise StopBeforeFit

    monkeypatch.setattr(cold_items.RARecommender, "fit", record)
    for options in (cheap, {}):
        with pytest.raises(StopBeforeFit):
            cold_items.llm_row("rarec", 0, train, test, texts, cold, SimpleNamespace(**base, **options))
    assert fitted == [(16, 64, 4e-4), (64, None, 1e-4)]
    plain = cold_items.checkpoint_folder(SimpleNamespace(**base), "rarec", 0, 0.0, {})
    short = cold_items.checkpoint_folder(SimpleNamespace(**base, **cheap), "rarec", 0, 0.0, {})
    assert short.name == plain.name + "_maxprompttokens16_headbatchsize64_headlr0.0004"
    # options left at the estimator's defaults name nothing: the rows before them keep their folders and lines
    defaults = dict(max_prompt_tokens=64, head_lr=1e-4)
    assert cold_items.checkpoint_folder(SimpleNamespace(**base, **defaults), "rarec", 0, 0.0, {}) == plain
    assert cold_items.estimator_options(SimpleNamespace(**defaults)) == {}
    row = {"row": "rarec", "seed": 0, **cheap}
    assert cold_items.setting(row) != cold_items.setting({"row": "rarec", "seed": 0})
    assert cold_items.label("rarec", [row]).endswith(", 16-token prompts, heads in batches of 64 at lr 0.0004")
    assert "prompts" not in cold_items.label("rarec", [{"row": "rarec", "seed": 0}])
    deeper = SimpleNamespace(**base, prefix_layers=16)  # session 60
    assert cold_items.checkpoint_folder(deeper, "rarec", 0, 0.0, {}).name == plain.name + "_prefixlayers16"
    assert cold_items.label("rarec", [{"row": "rarec", "seed": 0, "prefix_layers": 16}]).endswith(
        ", prefixes in the top 16 layers")
    sharper = SimpleNamespace(**base, distill_temperature=0.5)
    assert cold_items.checkpoint_folder(sharper, "rarec", 0, 0.0, {}).name == plain.name + "_distilltemperature0.5"
    assert cold_items.label("rarec", [{"row": "rarec", "seed": 0, "distill_temperature": 0.5}]).endswith(
        ", teacher at temperature 0.5")


def test_a_cold_item_row_aligned_on_more_users_is_kept_apart_and_says_so():
    row = {"row": "rarec_text_factors", "seed": 0, "id_dropout": 0.25, "text_rank": 8, "text_weight": 0.5,
           "users": cold_items.PRESET_USERS}
    more = dict(row, users=8000)
    assert cold_items.setting(row) != cold_items.setting(more)
    assert cold_items.label("rarec_text_factors", [more]).endswith(
        ", aligned on 8,000 users, ID dropout (25% of the batch's items borrow their text neighbour's SASRec part)")
    assert "aligned on" not in cold_items.label("rarec_text_factors", [row])
    assert "aligned on" not in cold_items.label("tfidf", [{"row": "tfidf", "seed": 0}])


def test_cold_item_text_factor_row_with_id_dropout_keeps_its_own_checkpoint_and_table_line(tmp_path):
    from types import SimpleNamespace

    args = SimpleNamespace(id_dropout=0.5, text_factors_id_dropout=0.25, users=30, checkpoints=tmp_path)
    assert cold_items.row_id_dropout("rarec_text_factors", args) == 0.25
    assert cold_items.row_id_dropout("rarec_id_dropout", args) == 0.5 and cold_items.row_id_dropout("rarec", args) == 0
    assert cold_items.row_id_dropout("rarec_text_factors", SimpleNamespace(id_dropout=0.5)) == 0.0  # off by default
    factors = dict(text_rank=8, text_weight=0.5)
    folders = {cold_items.checkpoint_folder(args, "rarec_text_factors", 0, share, factors) for share in (0.0, 0.25)}
    assert len(folders) == 2
    row = {"row": "rarec_text_factors", "seed": 0, "id_dropout": 0.25, **factors}
    plain = dict(row, id_dropout=0.0)
    assert cold_items.setting(row) != cold_items.setting(plain)
    assert cold_items.label("rarec_text_factors", [row]).endswith(
        ", ID dropout (25% of the batch's items borrow their text neighbour's SASRec part)")
    assert "ID dropout" not in cold_items.label("rarec_text_factors", [plain])


def test_cold_item_row_with_mean_pooling_fits_mean_pooled_towers_and_keeps_its_own_checkpoint_and_line(tmp_path):
    from types import SimpleNamespace

    from common import prefix_overrides

    from rarec import RARecommender
    from rarec.testing import tiny_llm

    factors = dict(text_rank=8, text_weight=0.5)
    pooled, plain = (SimpleNamespace(users=30, checkpoints=tmp_path, mean_pooling=flag) for flag in (True, False))
    assert cold_items.checkpoint_folder(pooled, "rarec_text_factors", 0, 0.0, factors) != \
        cold_items.checkpoint_folder(plain, "rarec_text_factors", 0, 0.0, factors)
    row = {"row": "rarec_text_factors", "seed": 0, "pooling": "mean", **factors}
    assert cold_items.setting(row) != cold_items.setting(dict(row, pooling="last"))
    assert cold_items.label("rarec_text_factors", [row]).endswith(", LLM vectors mean-pooled over the prompt's tokens")
    assert "pooled" not in cold_items.label("rarec_text_factors", [{k: v for k, v in row.items() if k != "pooling"}])
    data = make_interactions(n_users=30, n_items=30, max_length=10, random_state=1)
    rec = RARecommender(llm=tiny_llm(data.item_text), backbone="bpr", cf_epochs=1, max_train_samples=16,
                        sample_fraction=None, batch_size=8, head_epochs=1, device="cpu", random_state=0, verbose=0)
    with prefix_overrides(pooling="mean"):
        rec.fit(data.interactions, item_text=data.item_text)
    assert {rec.towers_.aligner.tower(t).config.pooling for t in ("user", "item")} == {"mean"}
    assert RARecommender(**rec.get_params()).fit(data.interactions, item_text=data.item_text) \
        .towers_.aligner.item_prefix.config.pooling == "last"  # closed: the default again


def test_cold_text_factor_row_with_block_tokens_fits_one_token_per_block_and_keeps_its_own_checkpoint_and_line(
        tmp_path, monkeypatch):
    from types import SimpleNamespace

    from rarec import _params
    from rarec.testing import tiny_llm

    data, log, texts, (train, pairs, cold), test = tiny_cold_split(monkeypatch)
    args = SimpleNamespace(users=30, device="cpu", data=tmp_path, llm=tiny_llm(data.item_text), cache=tmp_path / "cf",
                           text_rank=4, text_weight=0.5, block_tokens=True, checkpoints=tmp_path / "checkpoints")
    seen = {}

    class Stop(Exception):
        pass

    def fit(self, *a, **k):
        seen.update(prefix=_params.prefix_config(self, 12), folder=self.checkpoint_dir)
        raise Stop

    monkeypatch.setattr(cold_items.RARecommender, "fit", fit)
    with pytest.raises(Stop):
        cold_items.llm_row("rarec_text_factors", 0, train, test, texts, cold, args)
    assert seen["prefix"].id_blocks == (8, 4) and seen["prefix"].n_id_total == 2  # the tiny SASRec's 8, 4 factors
    assert seen["folder"].name.endswith("_blocktokens")
    with pytest.raises(ValueError, match="one block"):
        cold_items.llm_row("rarec", 0, train, test, texts, cold, args)
    assert _params.prefix_config(cold_items.RARecommender(), 12).id_blocks is None  # closed: the default again
    row = {"row": "rarec_text_factors", "seed": 0, "id_blocks": [8, 4], "text_rank": 4, "text_weight": 0.5}
    plain = {k: v for k, v in row.items() if k != "id_blocks"}
    assert cold_items.setting(row) != cold_items.setting(plain)
    assert "one ID token per block" in cold_items.label("rarec_text_factors", [row])
    assert "per block" not in cold_items.label("rarec_text_factors", [plain])


def test_cold_text_factor_row_with_balanced_columns_sets_the_research_setting_and_keeps_its_own_folder_and_line(
        tmp_path, monkeypatch):
    from types import SimpleNamespace

    from rarec import _params
    from rarec.testing import tiny_llm

    data, log, texts, (train, pairs, cold), test = tiny_cold_split(monkeypatch)
    args = SimpleNamespace(users=30, device="cpu", data=tmp_path, llm=tiny_llm(data.item_text), cache=tmp_path / "cf",
                           text_rank=4, text_weight=0.5, balance_blocks=True, balance_columns=True,
                           checkpoints=tmp_path / "checkpoints")
    seen = {}

    class Stop(Exception):
        pass

    def fit(self, *a, **k):
        seen.update(config=_params.alignment_config(self, False), folder=self.checkpoint_dir)
        raise Stop

    monkeypatch.setattr(cold_items.RARecommender, "fit", fit)
    with pytest.raises(Stop):
        cold_items.llm_row("rarec_text_factors", 0, train, test, texts, cold, args)
    assert seen["config"].balance_id_columns and seen["config"].balance_id_blocks
    assert seen["folder"].name.endswith("_balanced_balancedcolumns")
    assert not _params.alignment_config(cold_items.RARecommender(), False).balance_id_columns  # closed
    row = {"row": "rarec_text_factors", "seed": 0, "balance_id_blocks": True, "balance_id_columns": True}
    plain = {k: v for k, v in row.items() if k != "balance_id_columns"}
    assert cold_items.setting(row) != cold_items.setting(plain)
    assert "columns balanced too" in cold_items.label("rarec_text_factors", [row])
    assert "columns" not in cold_items.label("rarec_text_factors", [plain])


def test_a_fit_continued_from_a_shorter_fit_s_checkpoint_equals_the_longer_fit(tmp_path):
    from common import continued_from

    from rarec import RARecommender
    from rarec.testing import tiny_llm

    data = make_interactions(n_users=60, n_items=40, random_state=1)
    params = dict(llm=tiny_llm(data.item_text), backbone="bpr", cf_epochs=2, max_train_samples=64,
                  sample_fraction=None, batch_size=16, device="cpu", random_state=0, verbose=0)

    def fit(epochs, folder, resume=False):
        rec = RARecommender(epochs=epochs, checkpoint_dir=folder, **params)
        return rec.fit(data.interactions, item_text=data.item_text, resume=resume)

    one, fresh = fit(1, tmp_path / "one"), fit(2, tmp_path / "fresh")
    with continued_from(tmp_path / "one", tmp_path / "two"):
        continued = fit(2, tmp_path / "two", resume=True)
    losses = [[record["loss"] for record in rec.training_log_] for rec in (one, fresh, continued)]
    assert losses[2] == losses[1] and losses[2][0] == losses[0][0] and len(losses[2]) == len(losses[0]) + 1
    # its first epoch was not trained again: its record (with its wall time) is the one-epoch fit's
    assert continued.training_log_[0] == one.training_log_[0] != fresh.training_log_[0]
    users = data.interactions.users.to_list()[:20]
    assert str(continued.recommend(users, k=10)) == str(fresh.recommend(users, k=10)) \
        != str(one.recommend(users, k=10))
    with pytest.raises(ValueError, match="other parameters"):  # outside it, the copy is another fit's checkpoint
        fit(3, tmp_path / "two", resume=True)


def test_text_teacher_adds_the_scaled_tfidf_cosine_of_history_and_candidate(monkeypatch):
    import rarec._estimator as estimator
    from rarec import RARecommender
    from rarec.align import all_next_item_samples
    from rarec.testing import tiny_llm

    data = make_interactions(n_users=40, n_items=30, random_state=2)
    texts = data.item_text.align(data.interactions.items)
    given, original = [], estimator.train_alignment

    def spy(*args, extra_teacher=None, **kwargs):
        given.append(extra_teacher)
        return original(*args, extra_teacher=extra_teacher, **kwargs)

    monkeypatch.setattr(estimator, "train_alignment", spy)
    rec = RARecommender(llm=tiny_llm(data.item_text), backbone="bpr", cf_epochs=2, max_train_samples=32,
                        sample_fraction=None, batch_size=16, distill=0.5, device="cpu", random_state=0, verbose=0)
    with objective_study.text_teacher(0.25):
        rec.fit(data.interactions, item_text=data.item_text)
    assert estimator.train_alignment is spy and callable(given[0])  # given while open, restored after
    rec.fit(data.interactions, item_text=data.item_text)
    assert given[1] is None

    sequences = data.interactions.user_sequences()
    samples = all_next_item_samples(sequences)
    towers = rec.towers_
    quarter = objective_study.tfidf_teacher(towers, samples, sequences, 0.25)
    half = objective_study.tfidf_teacher(towers, samples, sequences, 0.5)
    rows, candidates = np.array([0, 3]), np.array([1, 4, 7])
    scores = quarter(rows, candidates)
    assert scores.shape == (2, 3) and scores.dtype == torch.float32 and bool((scores >= 0).all())
    torch.testing.assert_close(half(rows, candidates), 2 * scores)
    torch.testing.assert_close(quarter(rows, None)[:, candidates], scores)
    # the cosine of the sample's own history (its items' words) and each candidate
    items = cold_items.tfidf_items(texts)
    history = towers.window(sequences[samples.users[3]][:samples.ends[3]])
    profile = np.asarray(items[history].mean(0)).ravel()
    cosine = items[candidates] @ (profile / np.linalg.norm(profile))
    ratio = scores[1].numpy() / np.maximum(cosine, 1e-12)
    assert np.allclose(ratio[cosine > 1e-6], ratio[cosine > 1e-6][0], rtol=1e-4)


def test_output_head_benchmark_heads_start_at_the_fitted_model_and_then_learn():
    output_head = pytest.importorskip("output_head")
    x = torch.randn(5, 12)
    for mlp in (0, 16):  # linear, and linear + residual MLP: both the identity before training
        torch.testing.assert_close(output_head.Head(12, mlp)(x), x)
    generator = torch.Generator().manual_seed(0)
    users, items = torch.randn(64, 12, generator=generator), torch.randn(30, 12, generator=generator)
    targets = torch.randint(0, 30, (64,), generator=generator)
    teacher_users, teacher_items = torch.randn(64, 4, generator=generator), torch.randn(30, 4, generator=generator)
    user_head, item_head = output_head.train_heads(users, targets, items, teacher_users, teacher_items, "sampled",
                                                   2, 1e-2, "cosine", 0.9, seed=0, extras=8, mlp=16)
    assert user_head.mlp is not None and float(user_head.mlp[2].weight.abs().sum()) > 0  # the MLP trained
    torch.rand(3)  # the global RNG moved: a head seed still draws the same MLP
    again, _ = output_head.train_heads(users, targets, items, teacher_users, teacher_items, "sampled",
                                       2, 1e-2, "cosine", 0.9, seed=0, extras=8, mlp=16)
    torch.testing.assert_close(again.mlp[0].weight, user_head.mlp[0].weight)
    with torch.no_grad():
        assert not torch.allclose(item_head(items), items)


def test_objective_study_checkpoints_a_fit_and_resumes_it_to_the_same_row(tmp_path, monkeypatch):
    from rarec.testing import tiny_llm

    data = make_interactions(n_users=60, n_items=40, random_state=1)
    monkeypatch.setitem(objective_study.SETTINGS, "sasrec", (dict(dim=8, n_layers=1, n_heads=1, inner_dim=8),
                                                            dict(batch_size=32, epochs=1)))
    monkeypatch.setitem(objective_study.BASE, "llm", tiny_llm(data.item_text))
    split = leave_last_out(data.interactions, n_valid=0)
    backbone = objective_study.shared_sasrec(split.train, tmp_path / "cf")
    folder = objective_study.checkpoint_folder(tmp_path / "checkpoints", "ml-100k", "baseline", 0, 60, "cpu", "auto")
    assert folder.name == "objective_study_ml-100k_baseline_seed0_users60_cpu"
    assert objective_study.checkpoint_folder(None, "ml-100k", "baseline", 0, 60, "cpu", "auto") is None
    assert objective_study.checkpoint_folder(tmp_path, "x", "baseline", 0, 60, "cpu", "bfloat16").name.endswith(
        "_cpu_bfloat16")
    fits, original = [], objective_study.RARecommender.fit

    def fit(self, *args, resume=False, **kwargs):
        fits.append(resume)
        return original(self, *args, resume=resume, **kwargs)

    monkeypatch.setattr(objective_study.RARecommender, "fit", fit)

    def row(checkpoints):
        return objective_study.run_variant("baseline", 0, backbone, split, data.item_text, sample_scale=50.0,
                                           prompt_cache=None, checkpoints=checkpoints)

    plain, first = row(None), row(folder)
    assert (folder / "latest.json").exists() and "resumed" not in first
    again = row(folder)  # the folder exists: the fit resumes from it and ends where the first one did
    assert fits == [False, False, True] and again["resumed"] is True
    assert again["per_user"] == first["per_user"] == plain["per_user"]
    with pytest.raises(ValueError, match="cannot be checkpointed"):  # a backbone that cannot be saved
        objective_study.run_variant(next(iter(objective_study.EASE_FACTORS)), 0, backbone, split, data.item_text,
                                    checkpoints=folder)


def test_head_search_reproduces_the_fits_own_heads_and_trains_each_candidate(tmp_path, monkeypatch):
    from rarec.testing import tiny_llm

    head_search = pytest.importorskip("head_search")
    data = make_interactions(n_users=60, n_items=40, random_state=2)
    monkeypatch.setitem(objective_study.SETTINGS, "sasrec", (dict(dim=8, n_layers=1, n_heads=1, inner_dim=8),
                                                            dict(batch_size=32, epochs=1)))
    monkeypatch.setitem(objective_study.BASE, "llm", tiny_llm(data.item_text))
    name = "default + output heads with a residual MLP (1024)"
    monkeypatch.setitem(objective_study.VARIANTS, name, dict(objective_study.VARIANTS[name], head_epochs=3,
                                                             head_hidden=16))
    split = leave_last_out(data.interactions, n_valid=0)
    backbone = objective_study.shared_sasrec(split.train, tmp_path / "cf")
    source = tmp_path / "checkpoints" / "fit"
    fitted = objective_study.run_variant(name, 0, backbone, split, data.item_text, sample_scale=20.0,
                                         prompt_cache=None, checkpoints=source)
    assert (source / "heads").exists()
    checkpoint = head_search.copied_checkpoint(source, tmp_path / "scratch")
    assert (checkpoint / "latest.json").exists() and not (checkpoint / "heads").exists()
    rows = {}
    candidates = {head_search.FIT_HEADS: {}, "linear heads": dict(head_hidden=0), "heads averaged": dict(members=2)}
    head_search.run_search(name, 0, backbone, split, data.item_text, 20.0, split.train, checkpoint, candidates,
                           lambda head, row: rows.__setitem__(head, row), prompt_cache=None)
    # the towers without heads, then each candidate in turn (an ensemble: one row per size 2, 4, ...)
    assert list(rows) == [None, head_search.FIT_HEADS, "linear heads", "2 heads averaged"]
    assert (source / "heads").exists() and not (checkpoint / "heads").exists()  # the search wrote no heads
    own = rows[head_search.FIT_HEADS]
    assert own["valid_ndcg@10"] == pytest.approx(fitted["heads_valid_ndcg@10"])
    assert own["per_user"]["users"] == fitted["per_user"]["users"]
    assert own["per_user"]["ndcg@10"] == pytest.approx(fitted["per_user"]["ndcg@10"], abs=1e-6)
    assert rows["linear heads"]["per_user"] != own["per_user"]  # another setting, other heads
    averaged = rows["2 heads averaged"]  # the fit's heads and one more on another stream
    assert averaged["changes"] == {"members": 2} and averaged["per_user"] != own["per_user"]
    assert averaged["train_s"] > own["train_s"] / 2
    assert rows[None]["samples"] == fitted["samples"]
    result = {"dataset": "ml-100k", "variant": name, "seed": 0, "users": 60, "machine": "test",
              "towers": rows[None], "reference": objective_study.reference_rows(backbone, split),
              "rows": [{"head": head, **row} for head, row in rows.items() if head is not None]}
    table = head_search.render(result)
    assert "| + heads: linear heads |" in table or "| + heads: **linear heads** |" in table
    with pytest.raises(SystemExit, match="holds no checkpoint"):
        head_search.copied_checkpoint(tmp_path / "nothing", tmp_path / "scratch2")


def test_averaged_heads_score_the_mean_of_their_members_scores():
    from rarec.align._two_tower import OutputHeads

    head_search = pytest.importorskip("head_search")
    torch.manual_seed(0)
    members = [OutputHeads(6, hidden=4, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    for member in members:
        with torch.no_grad():
            for parameter in member.parameters():
                parameter.add_(0.1 * torch.randn_like(parameter))
    users, items = torch.randn(5, 6), torch.randn(7, 6)
    averaged = head_search.AveragedHeads(members)
    scores = averaged("user", users) @ averaged("item", items).T
    expected = torch.stack([m("user", users) @ m("item", items).T for m in members]).mean(0)
    torch.testing.assert_close(scores, expected)
    assert averaged("user", users).shape == (5, 18)


def test_objective_study_table_marks_a_resumed_row_s_fit_time_as_the_resumed_run_s_only():
    name = "default + output heads with a residual MLP (1024)"
    reference = {"SASRec backbone": {"ndcg@10": 0.1, "hr@100": 0.5}}
    row = {"variant": name, "seed": 0, "fit_s": 900.0, "valid_ndcg@10": 0.2, "ndcg@10": 0.2, "hr@100": 0.6}
    result = {"machine": "m", "reference": reference, "rows": [row]}
    assert "resumed" not in objective_study.render(result)
    result["rows"].append(dict(row, seed=1, fit_s=300.0, resumed=True))
    table = objective_study.render(result)
    assert f"| RA-Rec: {name} | 2 | 0.2000 ± 0.0000 | 0.2000 ± 0.0000 | 0.6000 ± 0.0000 | 600 (resumed) |" in table
    assert "counts only the run that finished the fit from a checkpoint" in table


def test_objective_study_pairs_the_rows_with_the_backbone_user_by_user():
    from types import SimpleNamespace

    from rarec import RARecommender
    from rarec.testing import tiny_llm

    data = make_interactions(n_users=50, n_items=30, random_state=3)
    split = leave_last_out(data.interactions, n_valid=0)
    rec = RARecommender(llm=tiny_llm(data.item_text), backbone="bpr", cf_epochs=2, max_train_samples=32,
                        sample_fraction=None, batch_size=16, device="cpu", random_state=0, verbose=0)
    rec.fit(split.train, item_text=data.item_text)
    backbone = SimpleNamespace(scorer=lambda train: rec._scores)  # the fit's own scores stand in for SASRec
    reference = objective_study.reference_rows(backbone, split)["SASRec backbone"]
    row = objective_study.mean_and_per_user(rec.evaluate(split.test, ks=[10, 100], metrics=["ndcg", "hr"],
                                                         per_user=True))
    assert row["per_user"]["users"] == reference["per_user"]["users"]  # the same users in the same order
    assert row["per_user"]["users"] == sorted(row["per_user"]["users"])
    assert row["ndcg@10"] == pytest.approx(reference["ndcg@10"]) and row["per_user"]["ndcg@10"] == \
        pytest.approx(reference["per_user"]["ndcg@10"])
    name = "default + output heads with a residual MLP (1024)"
    better = dict(row["per_user"], **{"ndcg@10": [v + 0.1 for v in row["per_user"]["ndcg@10"]]})
    result = {"reference": {"SASRec backbone": reference}, "rows": [{"variant": name, "per_user": better}]}
    lines = objective_study.paired_lines(result)
    assert f"| RA-Rec: {name} | 1 | +0.1000 ± 0.0000 | +0.0000 ± 0.0000 | 50 / 0 |" in lines
    assert objective_study.paired_lines({"reference": {"SASRec backbone": reference}, "rows": [{"variant": name}]}) \
        == []  # rows from before per-user metrics were kept are left out
    # output_head.py's rows pair with the same reference
    output_head = pytest.importorskip("output_head")
    users = {"valid": rec.user_vectors_, "test": rec.user_vectors_}
    found = output_head.ranking(users, rec.item_vectors_, split.test, split.train, split.test, split.train)
    assert found["per_user"]["users"] == reference["per_user"]["users"]
    assert found["ndcg@10"] == pytest.approx(float(np.mean(found["per_user"]["ndcg@10"])))


def test_paired_by_history_groups_users_by_length_and_pairs_each_group():
    paired_by_history = pytest.importorskip("paired_by_history")
    lengths = np.array([5, 40, 7, 90, 6, 60])
    groups = paired_by_history.quantile_groups(lengths, 2)
    assert groups.tolist() == [0, 1, 0, 1, 0, 1]
    tied = np.array([3, 3, 3, 3, 3, 3, 50, 80])  # the first three quartile edges are all 3: two groups, not four
    assert paired_by_history.quantile_groups(tied, 4).tolist() == [0, 0, 0, 0, 0, 0, 1, 1]
    users = np.arange(6)
    reference = {"users": users, "ndcg@10": np.zeros(6), "hr@100": np.array([1.0, 1, 1, 1, 1, 1])}
    runs = [{"users": users, "ndcg@10": np.array([0.5, 0, 0.5, 0, 0.5, 0]), "hr@100": np.ones(6)},
            {"users": users, "ndcg@10": np.array([0.5, 0, 0.5, 0, 0.5, 0]), "hr@100": np.array([1.0, 0, 1, 0, 1, 0])}]
    short, long = paired_by_history.paired_by_group(runs, reference, groups)
    assert short["users"] == long["users"] == 3
    assert short["ndcg@10"]["mean_difference"] == 0.5 and long["ndcg@10"]["mean_difference"] == 0.0
    assert short["hr@100"]["mean_difference"] == 0.0 and long["hr@100"]["mean_difference"] == -0.5
    section = paired_by_history.render("toy", "default", 2, lengths, groups, [short, long])
    assert "| 5–7 | 3 | +0.5000" in section and "| 40–90 | 3 |" in section


def test_results_json_keeps_lists_of_values_on_one_line_and_reads_back_the_same():
    common = pytest.importorskip("common")
    result = {"rows": [{"row": "tfidf", "seed": 0, "per_user": {"users": ["a", "b"], "hr@100": [0.0, 1.0]}}],
              "machine": "x", "empty": {}, "nested": [[1, 2], [3]]}
    text = common.results_json(result)
    assert json.loads(text) == result
    assert '"hr@100": [0.0, 1.0]' in text and text.endswith("}\n")


def test_cold_items_pairs_tfidf_on_the_users_the_llm_row_evaluated():
    cold_items = pytest.importorskip("cold_items")
    tfidf = {"users": ["a", "b", "c"], "hr@100": [1.0, 0.0, 1.0], "ndcg@10": [0.5, 0.0, 0.2]}
    assert cold_items.same_users(tfidf, ["c", "a"]) == {"users": ["c", "a"], "hr@100": [1.0, 1.0],
                                                        "ndcg@10": [0.2, 0.5]}
    llm = {"users": ["c", "a"], "hr@100": [0.0, 1.0], "ndcg@10": [0.0, 0.5]}
    lines = "\n".join(cold_items.paired_lines({"rows": [{"row": "tfidf", "per_user": tfidf},
                                                        {"row": "rarec", "per_user": llm}]}))
    assert "| 0.50× | -0.5000" in lines


def test_cached_prompt_states_give_the_same_fit_and_skip_the_prompt_pass_the_second_time(tmp_path, monkeypatch):
    common = pytest.importorskip("common")
    from rarec import RARecommender
    from rarec.align import _trainer
    from rarec.testing import tiny_llm

    data = make_interactions(n_users=40, n_items=30, random_state=2)
    llm = tiny_llm(data.item_text, layers=3)
    passes, original = [], _trainer._prepare_prompts
    monkeypatch.setattr(_trainer, "_prepare_prompts", lambda *args: (passes.append(args[1]), original(*args))[1])

    def fit(seed=0):
        rec = RARecommender(llm=llm, backbone="bpr", cf_epochs=2, max_train_samples=32, sample_fraction=None,
                            batch_size=16, prefix_layers=1, head_epochs=2, device="cpu", random_state=seed, verbose=0)
        return rec.fit(data.interactions, item_text=data.item_text)

    plain = fit()
    with common.cached_prompt_states(tmp_path / "states"):
        first = fit()
        assert passes == ["item", "user"] * 2  # written by the first fit under the cache
        second = fit()
        assert passes == ["item", "user"] * 2  # the second read both from disk
        fit(seed=1)  # other samples: the same item prompts, other user prompts
        assert passes == ["item", "user"] * 2 + ["user"]
    assert _trainer._prepare_prompts.__name__ == "<lambda>"  # the spy is back in place once closed
    assert len(list((tmp_path / "states").glob("*.pt"))) == 3
    for rec in (first, second):
        torch.testing.assert_close(rec.item_vectors_, plain.item_vectors_)
        torch.testing.assert_close(rec.user_vectors_, plain.user_vectors_)


def test_alignment_overrides_replace_trainer_fields_only_while_open():
    common = pytest.importorskip("common")
    from rarec import RARecommender, _params

    rec = RARecommender(lr=0.5)
    with common.alignment_overrides(id_dropout=0.3, batch_size=4):
        config = _params.alignment_config(rec, progress=False)
        assert (config.id_dropout, config.batch_size, config.lr) == (0.3, 4, 0.5)  # the rest is the estimator's
    assert _params.alignment_config(rec, progress=False).id_dropout == 0.0
    with pytest.raises(RuntimeError), common.alignment_overrides(id_dropout=0.3):
        raise RuntimeError
    assert _params.alignment_config(rec, progress=False).id_dropout == 0.0  # restored after an error too


def test_cold_items_id_dropout_row_is_named_with_its_share_and_kept_paired_figures_are_shown():
    users = ["a", "b"]
    tfidf = {"users": users, "hr@100": [1.0, 0.0], "ndcg@10": [0.5, 0.0]}
    llm = {"users": users, "hr@100": [1.0, 1.0], "ndcg@10": [0.5, 0.0]}
    metrics = {"hr@10": 0.5, "ndcg@10": 0.25, "hr@100": 1.0, "ndcg@100": 0.3, "seconds": 1.0}
    result = {"machine": "x", "cold_items": 1, "items": 10, "test_users": 2,
              "rows": [{"row": "tfidf", "seed": 0, "per_user": tfidf, **metrics},
                       {"row": "rarec_id_dropout", "seed": 0, "id_dropout": 0.5, "per_user": llm, **metrics},
                       # a row whose per-user lists were lost: the paired figures they gave are kept and shown
                       {"row": "rarec", "seed": 0, **metrics, "paired_with_tfidf": {
                           "ratio": 0.85, "hr@100": [-0.0251, 0.0085], "ndcg@10": [-0.0098, 0.0029],
                           "better_worse": [160, 217]}}]}
    text = cold_items.render(result)
    assert text.count("ID dropout (50% of the batch's items") == 2
    assert "| 2.00× | +0.5000" in text
    assert "| 1 | 0.85× | -0.0251 ± 0.0085 | -0.0098 ± 0.0029 | 160 / 217 |" in text


def test_cold_prefix_rules_mix_the_nearest_items_by_similarity_and_keep_the_nearest_norm():
    cold_prefixes = pytest.importorskip("cold_prefixes")
    rows = torch.tensor([[2.0, 0.0], [0.0, 4.0], [1.0, 1.0]])
    similarity = np.array([[0.9, 0.3, 0.0],   # nearest: item 0, then item 1
                           [0.0, 0.0, 0.0]], dtype=np.float32)  # shares no word: the mean row
    nearest = cold_prefixes.neighbour_mix(similarity, rows, **cold_prefixes.parse_rule("nearest")[1])
    assert torch.equal(nearest[0], rows[0]) and torch.allclose(nearest[1], rows.mean(0))
    plain = cold_prefixes.neighbour_mix(similarity, rows, **cold_prefixes.parse_rule("mean 2")[1])
    assert torch.allclose(plain[0], torch.tensor([1.0, 2.0]))
    weighted = cold_prefixes.neighbour_mix(similarity, rows, **cold_prefixes.parse_rule("weighted 2 p1")[1])
    direction = 0.75 * rows[0] + 0.25 * rows[1]  # weights 0.9 and 0.3, normalised
    assert torch.allclose(weighted[0], direction / direction.norm() * 2.0)  # the nearest row's norm
    sharper = cold_prefixes.neighbour_mix(similarity, rows, 2, power=4.0)
    assert torch.nn.functional.cosine_similarity(sharper[:1], rows[:1]).item() > \
        torch.nn.functional.cosine_similarity(weighted[:1], rows[:1]).item()
    with pytest.raises(ValueError, match="unknown rule"):
        cold_prefixes.parse_rule("median 3")


def test_cold_prefixes_nearest_rule_reproduces_the_cold_items_row(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from rarec import RARecommender
    from rarec.testing import tiny_llm

    cold_prefixes = pytest.importorskip("cold_prefixes")
    data, log, texts, (train, pairs, cold), test = tiny_cold_split(monkeypatch)
    llm = tiny_llm(data.item_text)
    args = SimpleNamespace(users=30, device="cpu", data=tmp_path, llm=llm, cache=tmp_path / "cf",
                           keep_models=tmp_path / "models")
    row = cold_items.llm_row("rarec", 0, train, test, texts, cold, args)
    _, _, cold_text = cold_items.warm_catalogue(train, texts, cold)
    held_out = list(zip(test.users.decode(test.user_codes), test.items.decode(test.item_codes)))
    warm = RARecommender.load(tmp_path / "models" / "rarec_seed0", llm=llm)
    found = list(cold_prefixes.try_rules(warm, cold_text, held_out, row["per_user"],
                                         ["nearest", "weighted 3 p1", "blend 0.5"]))
    assert [r["rule"] for r in found] == ["nearest", "weighted 3 p1", "blend 0.5"]
    assert found[0]["ndcg@10"] == pytest.approx(row["ndcg@10"])  # add_items' own rule, the same model
    assert found[0]["paired ndcg@10"] == [pytest.approx(0.0), pytest.approx(0.0)]  # paired with itself
    assert all(0.0 <= r["hr@100"] <= 1.0 for r in found)


def test_ease_weights_rebuild_co_occurring_items_and_the_teacher_scores_the_whole_history():
    from rarec import RARecommender
    from rarec.align import all_next_item_samples
    from rarec.testing import tiny_llm

    # items 0 and 1 always together, item 2 with 3 once: EASE's B links 0 and 1 most, never an item to itself
    sequences = [np.array([0, 1]), np.array([1, 0, 2]), np.array([0, 1, 3]), np.array([2, 3])]
    weights = EASE(l2=0.5).fit(sequences, 5).weights_.numpy()
    assert weights.shape == (5, 5) and np.allclose(np.diag(weights), 0.0)
    assert weights[0, 1] > weights[0, 2] and weights[0, 1] > 0 and np.allclose(weights[:, 4], 0.0)
    x = np.zeros((4, 5))
    for u, s in enumerate(sequences):
        x[u, s] = 1.0
    gram = x.T @ x + 0.5 * np.eye(5)  # B = argmin |X - XB|^2 + l2 |B|^2 with diag(B) = 0, Steck's closed form
    inverse = np.linalg.inv(gram)
    expected = np.eye(5) - inverse / np.diag(inverse)
    np.testing.assert_allclose(weights, expected, atol=1e-5)

    data = make_interactions(n_users=40, n_items=30, random_state=2)
    rec = RARecommender(llm=tiny_llm(data.item_text), backbone="bpr", cf_epochs=2, max_train_samples=16,
                        sample_fraction=None, batch_size=16, head_epochs=0, device="cpu", random_state=0, verbose=0)
    with objective_study.ease_teacher_of(0.25):
        rec.fit(data.interactions, item_text=data.item_text)  # trains with the teacher
    sequences = data.interactions.user_sequences()
    samples = all_next_item_samples(sequences)
    quarter = objective_study.ease_teacher(rec.towers_, samples, sequences, 0.25)
    half = objective_study.ease_teacher(rec.towers_, samples, sequences, 0.5)
    rows, candidates = np.array([2, 5]), np.array([0, 4, 9])
    scores = quarter(rows, candidates)
    assert scores.shape == (2, 3) and scores.dtype == torch.float32
    torch.testing.assert_close(half(rows, candidates), 2 * scores)
    torch.testing.assert_close(quarter(rows, None)[:, candidates], scores)
    b = EASE().fit(sequences, rec.n_items_).weights_.numpy()  # L2 200, the teacher's
    history = sequences[samples.users[5]][:samples.ends[5]]  # the whole history, not the prompt's window
    raw = b[np.unique(history)][:, candidates].sum(0)
    clear = np.abs(raw) > 1e-4
    ratio = scores[1].numpy()[clear] / raw[clear]
    assert clear.any() and np.allclose(ratio, ratio[0], rtol=1e-4) and ratio[0] > 0


def test_output_head_pooled_history_starts_at_zero_and_learns_and_pools_distinct_items():
    output_head = pytest.importorskip("output_head")
    x, history = torch.randn(5, 12), torch.randn(5, 12)
    torch.testing.assert_close(output_head.Head(12, 16, pool=12)(x, history), x)  # the fitted model at step 0
    items = torch.arange(12.0).reshape(4, 3)
    means = output_head.pooled([np.array([0, 2, 2]), np.array([], dtype=np.int64), np.array([3])], items)
    torch.testing.assert_close(means, torch.stack([(items[0] + items[2]) / 2, torch.zeros(3), items[3]]))
    generator = torch.Generator().manual_seed(0)
    users, item_vectors = torch.randn(64, 12, generator=generator), torch.randn(30, 12, generator=generator)
    targets = torch.randint(0, 30, (64,), generator=generator)
    user_head, _ = output_head.train_heads(users, targets, item_vectors, torch.randn(64, 4), torch.randn(30, 4),
                                           "sampled", 2, 1e-2, "cosine", 0.9, seed=0, extras=8,
                                           user_pooled=torch.randn(64, 12, generator=generator))
    assert float(user_head.pool.weight.abs().sum()) > 0


def test_output_head_ease_teacher_scores_each_sample_whole_history():
    output_head = pytest.importorskip("output_head")
    sequences = [np.array([0, 1, 2, 3]), np.array([1, 2, 4]), np.array([0, 3, 4, 1])]
    generator = torch.Generator().manual_seed(0)
    vectors = {"items": torch.randn(5, 6, generator=generator), "teacher_items": torch.randn(5, 4, generator=generator),
               "teacher_samples": torch.randn(3, 4, generator=generator),
               "sample_users": torch.tensor([0, 1, 2]), "sample_ends": torch.tensor([3, 2, 4]),
               "targets": torch.tensor([3, 4, 1])}
    extra = output_head.ease_extra(vectors, sequences, 0.25)
    weights = EASE().fit(sequences, 5).weights_.numpy()
    scores = extra(torch.tensor([0, 2]), torch.tensor([3, 4]))
    raw = np.stack([weights[[0, 1, 2]][:, [3, 4]].sum(0), weights[[0, 1, 3, 4]][:, [3, 4]].sum(0)])
    ratio = scores.numpy() / raw
    assert np.allclose(ratio, ratio[0, 0], rtol=1e-4) and ratio[0, 0] > 0  # one scale for every sample


def test_teacher_fusion_weight_zero_is_sasrec_and_ease_never_sees_the_validation_items(log, monkeypatch):
    teacher_fusion = pytest.importorskip("teacher_fusion")
    from rarec.cf import EASE
    from rarec.metrics import full_ranking_metrics

    inner = leave_last_out(log, n_valid=0)
    rng = np.random.default_rng(0)
    table = torch.as_tensor(rng.normal(size=(log.n_users, log.n_items)), dtype=torch.float32)

    class Backbone:  # stands in for SASRec: a fixed random score table
        def scorer(self, history):
            return lambda users: table[np.asarray(users)]

    fitted = []
    original = EASE.fit
    monkeypatch.setattr(EASE, "fit", lambda self, histories, n: fitted.append(list(histories)) or original(
        self, histories, n))
    rows = teacher_fusion.fusion_rows(Backbone(), inner, inner.train.user_sequences(), [200.0], [0.0, 1.0, None])
    alone = full_ranking_metrics(lambda u: table[np.asarray(u)], inner.test, inner.train, ks=[10, 100],
                                 metrics=["ndcg", "hr"])
    assert [r["weight"] for r in rows] == [0.0, 1.0, None]
    assert rows[0]["ndcg@10"] == alone["ndcg@10"] and rows[0]["hr@100"] == alone["hr@100"]
    assert rows[2]["ndcg@10"] > rows[0]["ndcg@10"]  # co-occurrence ranks a synthetic log better than noise
    held = set(zip(inner.test.user_codes.tolist(), inner.test.item_codes.tolist()))
    assert not any((u, i) in held for u, h in enumerate(fitted[0]) for i in h)
    assert "| every user | 200 | SASRec alone |" in teacher_fusion.render(
        {"dataset": "x", "users": 3, "all_users": 3, "machine": "m", "rows": {"subset": rows}})


def test_given_ease_is_fitted_on_every_user_without_their_validation_items_and_only_while_open(log, monkeypatch):
    import rarec.align._trainer as trainer

    original = trainer.cooccurrence_teacher
    fitted = []
    fit = EASE.fit
    monkeypatch.setattr(EASE, "fit", lambda self, histories, n: fitted.append(list(histories)) or fit(
        self, histories, n))
    with objective_study.given_ease(None, log):
        assert trainer.cooccurrence_teacher is original and not fitted
    with objective_study.given_ease(50.0, log):
        given = trainer.cooccurrence_teacher.keywords["ease"]
        assert given.l2 == 50.0 and trainer.cooccurrence_teacher.func is original
    assert trainer.cooccurrence_teacher is original
    inner = leave_last_out(log, n_valid=0)
    assert len(fitted) == 1 and len(fitted[0]) == log.n_users  # every user
    assert [h.tolist() for h in fitted[0]] == [h.tolist() for h in inner.train.user_sequences()]


def test_teacher_span_is_the_teacher_on_the_whole_space_and_less_on_a_narrow_one(log):
    teacher_span = pytest.importorskip("teacher_span")

    inner = leave_last_out(log, n_valid=0)
    table = torch.as_tensor(np.random.default_rng(0).normal(size=(log.n_users, log.n_items)), dtype=torch.float32)
    sasrec = lambda users: table[np.asarray(users)]  # noqa: E731  stands in for SASRec: a fixed random table
    ease = EASE(200.0).fit(inner.train.user_sequences(), log.n_items)
    whole = teacher_span.span_basis(torch.randn(log.n_items, log.n_items))
    rows = {r["row"]: r for r in teacher_span.teacher_rows(sasrec, inner, ease, whole, whole, 1.0, [2])}
    teacher = rows["SASRec + 1 x EASE (the teacher)"]
    for name in ["EASE's history side restricted", "EASE's item side restricted", "EASE's both sides restricted"]:
        assert rows[name]["ndcg@10"] == pytest.approx(teacher["ndcg@10"], abs=2e-3)
    assert rows["SASRec alone, its item side restricted"]["ndcg@10"] == pytest.approx(rows["SASRec"]["ndcg@10"],
                                                                                        abs=2e-3)
    line = teacher_span.span_basis(torch.ones(log.n_items, 3))  # three equal columns: one direction
    assert line.shape == (log.n_items, 1)
    narrow = {r["row"]: r for r in teacher_span.teacher_rows(sasrec, inner, ease, line, line, 1.0, [2])}
    assert narrow["EASE's both sides restricted"]["ndcg@10"] < teacher["ndcg@10"]
    assert teacher_span.effective_rank(torch.randn(4000, 8)) == pytest.approx(8, abs=0.5)


def test_ease_factors_backbone_scores_sasrec_plus_a_weighted_truncated_ease(log, tmp_path, monkeypatch):
    from rarec.cf import history_matrix

    monkeypatch.setitem(objective_study.SETTINGS, "sasrec", (dict(dim=8, n_layers=1, n_heads=1, inner_dim=8),
                                                            dict(batch_size=32, epochs=1)))
    split = leave_last_out(log, n_valid=0)
    sasrec = objective_study.shared_sasrec(split.train, tmp_path / "sasrec")
    inner = leave_last_out(split.train, n_valid=0).train
    wrapped = objective_study.WithEaseFactors(sasrec, inner, rank=5, weight=0.25)
    assert wrapped.item_embeddings().shape == (log.n_items, 8 + 5) and wrapped.n_items_ == log.n_items
    histories = [np.asarray(h) for h in inner.user_sequences()[:20]]
    left, values, right = torch.linalg.svd(EASE().fit(inner.user_sequences(), log.n_items).weights_.double())
    truncated = (history_matrix(histories, log.n_items) @ ((left[:, :5] * values[:5]) @ right[:5]).numpy())
    added = wrapped.score_histories(histories) - sasrec.score_histories(histories)
    clear = torch.as_tensor(np.abs(truncated) > 1e-4)
    ratio = (added.double() / torch.as_tensor(truncated))[clear]
    assert torch.allclose(ratio, ratio.mean(), rtol=1e-3) and ratio.mean() > 0  # one positive scale for all
    with pytest.raises(NotImplementedError):
        wrapped.fit(split.train)


def test_factor_check_is_the_fit_s_own_check_on_the_fit_s_validation_items(log, tmp_path, monkeypatch):
    factor_check = pytest.importorskip("factor_check")
    import rarec._fit_steps as fit_steps

    monkeypatch.setitem(objective_study.SETTINGS, "sasrec", (dict(dim=8, n_layers=1, n_heads=1, inner_dim=8),
                                                            dict(batch_size=32, epochs=1)))
    split = leave_last_out(log, n_valid=0)
    sasrec = objective_study.shared_sasrec(split.train, tmp_path / "sasrec")
    seen = []
    check = fit_steps.validation_check
    monkeypatch.setattr(fit_steps, "validation_check", lambda sequences, held_out, *rest: seen.append(
        (sequences, held_out)) or check(sequences, held_out, *rest))
    row = factor_check.check_rank(sasrec, split.train, 4)
    assert row["rank"] == 4 and row["kept"] == (row["valid_ndcg@10_with_factors"] > row["valid_ndcg@10_backbone"])
    assert (row["weight"], row["l2"]) == (0.25, 200.0)  # the estimator's defaults
    other = factor_check.check_rank(sasrec, split.train, 4, weight=0.5, l2=10.0)
    assert other["valid_ndcg@10_backbone"] == row["valid_ndcg@10_backbone"]
    assert other["valid_ndcg@10_with_factors"] != row["valid_ndcg@10_with_factors"]
    inner = leave_last_out(split.train, n_valid=0)  # what fit(split.train) trains and validates on
    sequences, held_out = seen[0]  # the first call
    assert [s.tolist() for s in sequences] == [s.tolist() for s in inner.train.user_sequences()]
    assert (held_out != inner.test.to_csr()).nnz == 0
    assert "| 4 |" in factor_check.render({"machine": "m", "users": 200, "all_users": 200, "rows": [row]})


def test_factor_check_checks_text_factors_after_ease_s(log, tmp_path, monkeypatch):
    factor_check = pytest.importorskip("factor_check")
    from rarec.data import ItemText

    texts = [ItemText(f"item {i} brand{i % 7}", (f"shelf {i % 3}",)) for i in range(log.n_items)]
    monkeypatch.setitem(objective_study.SETTINGS, "sasrec", (dict(dim=8, n_layers=1, n_heads=1, inner_dim=8),
                                                            dict(batch_size=32, epochs=1)))
    split = leave_last_out(log, n_valid=0)
    sasrec = objective_study.shared_sasrec(split.train, tmp_path / "sasrec")
    alone = factor_check.check_rank(sasrec, split.train, 4, weight=0.25, l2=50.0)
    row = factor_check.check_rank(sasrec, split.train, 4, weight=0.25, l2=50.0, text=(6, 0.5), texts=texts)
    assert (row["rank"], row["text_rank"], row["text_weight"]) == (4, 6, 0.5)
    assert row["valid_ndcg@10_backbone"] == alone["valid_ndcg@10_backbone"]
    assert row["ease_kept"] == alone["kept"]
    assert row["valid_ndcg@10_with_factors"] != alone["valid_ndcg@10_with_factors"]
    assert "| 6, 0.5 |" in factor_check.render({"machine": "m", "users": 200, "all_users": 200, "rows": [row]})
    width = sasrec.item_embeddings().shape[1] + (4 if row["ease_kept"] else 0) + (6 if row["kept"] else 0)
    cut = factor_check.check_rank(sasrec, split.train, 4, weight=0.25, l2=50.0, text=(6, 0.5), texts=texts,
                                  narrow=(3, width))
    if row["ease_kept"] or row["kept"]:  # at full width the cut ID vectors rank as the kept ones do
        kept = row["valid_ndcg@10_with_factors"] if row["kept"] else alone["valid_ndcg@10_with_factors"]
        assert cut["narrow"][str(width)] == pytest.approx(kept, abs=1e-6)
        assert 0.0 <= cut["narrow"]["3"] <= 1.0
        assert "| 3 |" in factor_check.render({"machine": "m", "users": 200, "all_users": 200, "rows": [cut]})
        by_scores = factor_check.check_rank(sasrec, split.train, 4, weight=0.25, l2=50.0, text=(6, 0.5),
                                            texts=texts, narrow=(width,), narrow_by="scores")
        assert by_scores["narrow_by_scores"][str(width)] == pytest.approx(kept, abs=1e-4)


def test_narrowing_by_scores_is_the_best_rank_k_approximation_of_the_users_scores():
    factor_check = pytest.importorskip("factor_check")
    generator = torch.Generator().manual_seed(0)
    users = torch.randn(300, 12, generator=generator) * torch.linspace(3.0, 0.1, 12)  # users vary unevenly
    items = torch.randn(50, 12, generator=generator)
    scores = users.double() @ items.double().T
    best = torch.linalg.svdvals(scores)[4:].square().sum().sqrt()  # Eckart-Young: the rank-4 error
    errors = {}
    for by in ("items", "scores"):
        user_map, item_map = factor_check.narrow_maps(items, 4, by, lambda h: users[h], np.arange(300))
        errors[by] = torch.linalg.norm(scores - ((users @ user_map) @ (items @ item_map).T).double())
        full = factor_check.narrow_maps(items, 12, by, lambda h: users[h], np.arange(300))
        assert torch.allclose((users @ full[0]) @ (items @ full[1]).T, scores.float(), atol=1e-3)
    assert errors["scores"] == pytest.approx(best.item(), rel=1e-4)
    assert errors["items"] > errors["scores"]


def test_id_vector_prefix_rules_rank_each_target_as_the_library_does_and_move_with_the_target_score():
    cold_prefixes = pytest.importorskip("cold_prefixes")
    import scipy.sparse as sp
    from rarec.metrics import full_ranking_metrics

    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(40, 150, generator=generator)
    targets = np.random.default_rng(0).integers(0, 150, size=40)
    seen = torch.rand(40, 150, generator=generator) < 0.2
    seen[torch.arange(40), torch.as_tensor(targets)] = False
    rows = torch.arange(40)
    unchanged = cold_prefixes.target_metrics(scores, targets, scores[rows, targets], seen)
    held_out = sp.csr_matrix((np.ones(40), (np.arange(40), targets)), shape=(40, 150))
    expected = full_ranking_metrics(scores.numpy(), held_out, sp.csr_matrix(seen.numpy()), ks=(10, 100),
                                    metrics=("hr", "ndcg"))
    assert unchanged == pytest.approx({k: expected[k] for k in unchanged})
    assert cold_prefixes.target_metrics(scores, targets, torch.full((40,), 1e6), seen)["ndcg@10"] == 1.0
    assert cold_prefixes.target_metrics(scores, targets, torch.full((40,), -1e6), seen)["hr@100"] == 0.0


def test_cold_item_rows_with_another_training_budget_are_fitted_with_it_and_kept_apart(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from rarec import _params
    from rarec.testing import tiny_llm

    data, log, texts, (train, pairs, cold), test = tiny_cold_split(monkeypatch)
    args = SimpleNamespace(users=30, device="cpu", data=tmp_path, llm=tiny_llm(data.item_text), cache=tmp_path / "cf",
                           checkpoints=tmp_path / "checkpoints", epochs=2, forward_only_negatives=True)
    seen = {}

    class Stop(Exception):
        pass

    def fit(self, *a, **k):
        config = _params.alignment_config(self, False)
        seen.update(epochs=config.epochs, live=config.live_random_negatives, folder=self.checkpoint_dir.name)
        raise Stop

    monkeypatch.setattr(cold_items.RARecommender, "fit", fit)
    with pytest.raises(Stop):
        cold_items.llm_row("rarec", 0, train, test, texts, cold, args)
    assert seen == {"epochs": 2, "live": False,
                    "folder": "test_rarec_seed0_users30_dropout0_epochs2_forward_only_negatives"}
    default = {"row": "rarec", "seed": 0}
    budgeted = {**default, "epochs": 2, "live_random_negatives": False}
    assert cold_items.setting(default) != cold_items.setting(budgeted)
    assert cold_items.label("rarec", [budgeted]).endswith(", 2 alignment epochs, random negatives forward-only")
    assert cold_items.label("rarec", [default]) == cold_items.LABELS["rarec"]


def test_the_cold_text_factor_row_fits_with_the_estimator_parameters_its_research_settings_became(tmp_path,
                                                                                                  monkeypatch):
    """--text-rank/--text-weight, --balance-blocks and --forward-only-negatives reach the fit as estimator
    parameters (session 56), ID dropout, which is none, as the trainer override: the same trainer and ID-factor
    settings the earlier rows' overrides built, so their checkpoints still resume."""
    from types import SimpleNamespace

    from rarec import _params
    from rarec.testing import tiny_llm

    data, log, texts, (train, pairs, cold), test = tiny_cold_split(monkeypatch)
    args = SimpleNamespace(users=30, device="cpu", data=tmp_path, llm=tiny_llm(data.item_text), cache=tmp_path / "cf",
                           text_rank=8, text_weight=0.5, balance_blocks=True, forward_only_negatives=True,
                           text_factors_id_dropout=0.25)
    seen = {}

    class Stop(Exception):
        pass

    def fit(self, *a, **k):
        seen.update(params=self.get_params(), config=_params.alignment_config(self, False),
                    factors=_params.id_factor_settings(self))
        raise Stop

    monkeypatch.setattr(cold_items.RARecommender, "fit", fit)
    with pytest.raises(Stop):
        cold_items.llm_row("rarec_text_factors", 0, train, test, texts, cold, args)
    params, config, factors = seen["params"], seen["config"], seen["factors"]
    assert (params["text_factors"], params["text_factor_weight"]) == (8, 0.5) == (factors.text_rank, factors.text_weight)
    assert params["balance_id_blocks"] and config.balance_id_blocks
    assert not params["random_negative_gradients"] and not config.live_random_negatives
    assert config.id_dropout == 0.25
    with pytest.raises(Stop):
        cold_items.llm_row("rarec", 0, train, test, texts, cold, SimpleNamespace(
            users=30, device="cpu", data=tmp_path, llm=args.llm, cache=tmp_path / "cf"))
    defaults = cold_items.RARecommender().get_params()
    assert {key: seen["params"][key] for key in ("text_factors", "balance_id_blocks", "random_negative_gradients")} \
        == {key: defaults[key] for key in ("text_factors", "balance_id_blocks", "random_negative_gradients")}
    assert seen["config"].id_dropout == 0.0


def test_step_cost_times_the_requested_steps_of_a_real_fit_both_ways(tmp_path, monkeypatch):
    step_cost = pytest.importorskip("step_cost")
    from rarec.testing import tiny_llm

    data = make_interactions(n_users=60, n_items=40, random_state=1)
    monkeypatch.setitem(objective_study.SETTINGS, "sasrec", (dict(dim=8, n_layers=1, n_heads=1, inner_dim=8),
                                                            dict(batch_size=32, epochs=1)))
    split = leave_last_out(data.interactions, n_valid=0)
    backbone = objective_study.shared_sasrec(split.train, tmp_path / "cf")
    inner = leave_last_out(split.train, n_valid=0)
    import rarec._estimator as estimator

    seen, dtypes, tokens, original = [], [], [], estimator.train_alignment  # the trainer's config, LLM, prompts
    monkeypatch.setattr(estimator, "train_alignment", lambda towers, samples, sequences, config, *a, **k:
                        seen.append(config) or dtypes.append(towers.llm.dtype)
                        or tokens.append(towers.settings.max_prompt_tokens)
                        or original(towers, samples, sequences, config, *a, **k))
    for live in (True, False):
        run = step_cost.timed_epoch(backbone, inner.train, inner.test, data.item_text, live, steps=2,
                                    llm=tiny_llm(data.item_text), prompt_cache=None)
        assert run["steps"] == 2 and run["live"] is live and run["seconds_per_step"] > 0
        assert seen[-1].live_random_negatives is live and seen[-1].n_random_negatives == 64
        assert dtypes[-1] == torch.float32 and run["llm_dtype"] == "float32"
    run = step_cost.timed_epoch(backbone, inner.train, inner.test, data.item_text, True, steps=2,
                                llm=tiny_llm(data.item_text), prompt_cache=None, llm_dtype="bfloat16")
    assert dtypes[-1] == torch.bfloat16 and run["llm_dtype"] == "bfloat16" and run["steps"] == 2
    assert tokens == [64, 64, 64]
    run = step_cost.timed_epoch(backbone, inner.train, inner.test, data.item_text, False, steps=2,
                                llm=tiny_llm(data.item_text), prompt_cache=None, max_prompt_tokens=16)
    assert tokens[-1] == 16 and run["max_prompt_tokens"] == 16 and not seen[-1].live_random_negatives


def test_objective_study_keeps_a_gpu_run_apart_from_the_cpu_rows():
    from pathlib import Path

    data = Path("somewhere/amazon-beauty")
    cpu, cpu_marker, cpu_sasrec = objective_study.run_files(data, "cpu")
    gpu, gpu_marker, gpu_sasrec = objective_study.run_files(data, "cuda")
    assert (cpu.name, cpu_marker) == ("objective_study_amazon-beauty.json", "objective-study-amazon-beauty")
    assert (gpu.name, gpu_marker) == ("objective_study_amazon-beauty_gpu.json", "objective-study-amazon-beauty-gpu")
    assert (cpu_sasrec.name, gpu_sasrec.name) == ("objective_study_sasrec_amazon-beauty",
                                                  "objective_study_sasrec_amazon-beauty_gpu")
    reference = {"SASRec backbone": {"ndcg@10": 0.1, "hr@100": 0.5}}
    result = {"dataset": "amazon-beauty", "machine": "m", "reference": reference, "rows": []}
    assert "(Amazon Beauty, SmolLM2-135M, CPU)" in objective_study.render(result)
    assert "(Amazon Beauty, SmolLM2-135M, GPU)" in objective_study.render(dict(result, device="cuda"))
    gpu_variants = objective_study.VARIANTS
    assert gpu_variants["default (session 23), 3 epochs (GPU preset)"]["epochs"] == 3
    assert gpu_variants["default (session 23), 20% of the samples, no cap (GPU)"]["max_train_samples"] is None
    assert gpu_variants["default (session 23), 6 epochs (GPU)"] == dict(gpu_variants[
        "default (session 23), 3 epochs (GPU preset)"], epochs=6)
    assert gpu_variants["default (session 23), 5 epochs (GPU)"] == dict(gpu_variants[
        "default (session 23), 3 epochs (GPU preset)"], epochs=5)


class StopBeforeFit(Exception):
    pass


def recorded_variant_params(monkeypatch, runs) -> list[dict]:
    """The estimator parameters objective_study.run_variant passes for each (variant, keyword arguments) in
    ``runs``; each fit is stopped before it starts."""
    seen = []

    class Recorder:
        def __init__(self, **params):
            seen.append(params)

        def fit(self, *args, **kwargs):
            raise StopBeforeFit

    monkeypatch.setattr(objective_study, "RARecommender", Recorder)
    split = type("Split", (), {"train": None})()
    for name, kwargs in runs:
        with pytest.raises(StopBeforeFit):
            objective_study.run_variant(name, 0, None, split, None, prompt_cache=None, **kwargs)
    return seen


def test_a_variant_may_fix_the_llm_dtype_over_the_run_s(monkeypatch):
    names = ("default (session 23), LLM in bf16", "default + co-occurrence factors (session 23)")
    bf16, fp32 = recorded_variant_params(monkeypatch, [(name, dict(llm_dtype="float32")) for name in names])
    assert (bf16["llm_dtype"], fp32["llm_dtype"]) == ("bfloat16", "float32")
    assert bf16["random_state"] == fp32["random_state"] == 0
    assert {k: v for k, v in objective_study.VARIANTS["default (session 23), LLM in bf16"].items()
            if k != "llm_dtype"} == objective_study.VARIANTS["default + co-occurrence factors (session 23)"]


def test_the_samples_variants_scale_the_samples_and_the_selection_budget_of_their_base_row(monkeypatch):
    base = "default + co-occurrence teacher + pooled history (session 20)"
    plain, more = recorded_variant_params(monkeypatch, [(name, dict(sample_scale=3.0))
                                                        for name in (base, objective_study.SAMPLES_10000)])
    assert more["max_train_samples"] == 10_000 and plain.get("max_train_samples") is None
    assert more["sample_fraction"] == pytest.approx(2 * plain["sample_fraction"]) == pytest.approx(0.30)
    assert {k: v for k, v in more.items() if k not in ("max_train_samples", "sample_fraction")} == \
        {k: v for k, v in plain.items() if k not in ("max_train_samples", "sample_fraction")}
    half, most = recorded_variant_params(monkeypatch, [(name, dict(sample_scale=3.0)) for name in (
        objective_study.SAMPLES_10000_BF16, objective_study.SAMPLES_20000_BF16)])
    assert half == dict(more, llm_dtype="bfloat16")
    assert most == dict(half, max_train_samples=20_000, sample_fraction=min(1.0, 4 * plain["sample_fraction"]))


@pytest.mark.parametrize("name, expected", [
    (objective_study.WIDE_BALANCED_GPU, dict(epochs=4)),
    (objective_study.WIDE_BALANCED_20000_BF16,
     dict(epochs=1, max_train_samples=20_000, sample_fraction=0.2, llm_dtype="bfloat16")),
    (objective_study.WIDE_BALANCED_20000_BF16_2_EPOCHS,
     dict(epochs=2, max_train_samples=20_000, sample_fraction=0.2, llm_dtype="bfloat16")),
])
def test_the_wide_balanced_variants_fit_with_balanced_blocks_wide_factors_and_their_budget(monkeypatch, name,
                                                                                          expected):
    from rarec import RARecommender, _params

    seen = []

    class Stop(Exception):
        pass

    class Recorder(RARecommender):
        def fit(self, *args, **kwargs):  # what the fit would read: its trainer and ID-factor settings
            seen.append((self.get_params(), _params.alignment_config(self, False), _params.id_factor_settings(self)))
            raise Stop

    @contextlib.contextmanager
    def factors_fitted_on(train):
        fitted_on.append(train)
        yield

    fitted_on = []
    monkeypatch.setattr(objective_study, "RARecommender", Recorder)
    monkeypatch.setattr(objective_study, "factors_fitted_on", factors_fitted_on)
    split = type("Split", (), {"train": "the split's training log"})()
    for variant in (name, "default (session 23), 5 epochs (GPU)"):
        with pytest.raises(Stop):
            objective_study.run_variant(variant, 0, None, split, None, prompt_cache=None, llm_dtype="float32")
    (params, config, factors), (_, plain_config, plain_factors) = seen
    assert (params["cooccurrence_factors"], params["cooccurrence_teacher"]) == (512, 0.1)
    assert {key: params.get(key) for key in expected} == expected
    assert config.balance_id_blocks and not plain_config.balance_id_blocks
    assert (factors.cooccurrence_l2, factors.text_rank, factors.text_weight) == (50.0, 512, 0.25)
    assert plain_factors == _params.id_factor_settings(RARecommender())  # the estimator's defaults
    assert fitted_on == ["the split's training log", None]  # the wide variant's EASE factors: on every user


def test_shared_sasrec_is_fitted_once_and_always_read_back_from_its_cache(tmp_path, monkeypatch):
    data = make_interactions(n_users=40, n_items=30, random_state=2)
    monkeypatch.setitem(objective_study.SETTINGS, "sasrec", (dict(dim=8, n_layers=1, n_heads=1, inner_dim=8),
                                                            dict(batch_size=32, epochs=1)))
    first = objective_study.shared_sasrec(data.interactions, tmp_path / "sasrec")
    assert {f.name for f in (tmp_path / "sasrec").iterdir()} == {"meta.json", "tensors.safetensors"}
    monkeypatch.setitem(objective_study.SETTINGS, "sasrec", None)  # a second call must not fit again
    again = objective_study.shared_sasrec(data.interactions, tmp_path / "sasrec", device="cuda")
    histories = [np.array([0, 1, 2]), np.array([3])]
    torch.testing.assert_close(first.score_histories(histories, np.array([0, 1])),
                               again.score_histories(histories, np.array([0, 1])))


def test_id_recovery_reads_a_linear_part_back_and_not_noise():
    id_recovery = pytest.importorskip("id_recovery")
    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 12))
    carried = features[:, :3] @ rng.normal(size=(3, 4))
    r2, alpha = id_recovery.held_out_r2(features, carried)
    assert r2 > 0.99 and alpha in id_recovery.ALPHAS
    noise, _ = id_recovery.held_out_r2(features, rng.normal(size=(500, 4)))
    assert noise < 0.05


def test_id_recovery_measures_each_id_part_of_a_saved_model(tmp_path):
    id_recovery = pytest.importorskip("id_recovery")
    from rarec import RARecommender
    from rarec.testing import tiny_llm

    log, text = make_interactions(n_users=40, n_items=30, n_categories=3, max_length=12, random_state=1)
    llm = tiny_llm(text)
    rec = RARecommender(llm=llm, cf_epochs=2, epochs=1, max_train_samples=32, batch_size=8, verbose=0,
                        random_state=0, head_epochs=1, backbone_params=dict(dim=8, n_layers=1, n_heads=1,
                                                                            inner_dim=8))
    rec.fit(log.to_array(), item_text=text).save(tmp_path / "model")
    row = id_recovery.measure(tmp_path / "model", words_only=True, llm=llm, frozen=True)
    width = sum(part["width"] for part in row["parts"].values())
    assert row["id_width"] == width and "backbone" in row["parts"] and row["items"] == rec.towers_.backbone.n_items_
    assert set(row["spaces"]) == {"LLM item vectors before the heads", "item vectors after the heads",
                                  id_recovery.WORDS_ONLY, *id_recovery.FROZEN.values()}
    frozen = {p: id_recovery.frozen_vectors(rec.towers_, 3, p) for p in id_recovery.FROZEN}
    tokens = rec.towers_.item_tokens[0]
    one = rec.towers_.llm.forward([tokens[:end] for end in range(1, len(tokens) + 1)])  # each prefix's last state
    np.testing.assert_allclose(frozen["last"][0], one[-1].double().numpy(), atol=1e-5)
    np.testing.assert_allclose(frozen["mean"][0], one.double().mean(0).numpy(), atol=1e-5)
    for found in row["spaces"].values():
        assert set(found["r2"]) == set(row["parts"]) and all(value <= 1.0 for value in found["r2"].values())
    users = row["users"]  # the user side: the known users' ID parts against the user vectors the score uses
    assert users["users"] == int((rec.seen_.getnnz(axis=1) > 0).sum()) and set(users["parts"]) == set(row["parts"])
    assert sum(p["variance_share"] for p in users["parts"].values()) == pytest.approx(1.0)
    (found,) = users["spaces"].values()
    assert set(found["r2"]) == set(row["parts"]) and all(value <= 1.0 for value in found["r2"].values())
    table = id_recovery.render({"rows": [row], "machine": "m"})
    assert "| model | items | ID tokens | epochs | vectors |" in table and "backbone 8" in table
    assert "| model | users | vectors |" in table and "user vectors the score uses" in table


def test_the_mean_pooling_variant_fits_the_default_with_mean_pooled_towers(monkeypatch):
    from rarec import RARecommender

    pooled = []

    class Stop(Exception):
        pass

    def fit(rec, *args, **kwargs):  # the prefix shape the fit would build, then stop
        from rarec import _params

        pooled.append((rec.get_params(), _params.prefix_config(rec, 8).pooling))
        raise Stop

    monkeypatch.setattr(RARecommender, "fit", fit)
    split = type("Split", (), {"train": None})()
    for variant in ("default (session 23) + mean-pooled LLM vectors", "default + co-occurrence factors (session 23)"):
        with pytest.raises(Stop):
            objective_study.run_variant(variant, 0, None, split, None, prompt_cache=None)
    (params, pooling), (plain_params, plain_pooling) = pooled
    assert (pooling, plain_pooling) == ("mean", "last") and params == plain_params


def test_teacher_cost_times_two_ways_of_the_same_scores(log):
    """benchmarks/teacher_cost.py: its "dense" way (the code before EASE.score read only the histories' rows) gives
    the scores EASE.score gives, for some candidates and for every item."""
    teacher_cost = pytest.importorskip("teacher_cost")
    from rarec.cf import history_matrix

    sequences = log.user_sequences()
    ease = EASE().fit(sequences, log.n_items)
    rows = history_matrix([s[:3] for s in sequences[:16]], log.n_items)
    for candidates in (np.array([5, 1, 70]), None):
        torch.testing.assert_close(teacher_cost.dense_scores(ease, rows, candidates), ease.score(rows, candidates))


def test_step_cost_summary_keeps_what_a_stopped_run_measured():
    from argparse import Namespace
    from pathlib import Path

    step_cost = pytest.importorskip("step_cost")
    args = Namespace(data=Path("x/amazon-beauty"), steps=20, rounds=2)
    ways = [("default", {}), ("short", {})]
    runs = [{"way": "default", "seconds_per_step": 5.0}]
    first = step_cost.summary(args, ways, runs)
    assert first["rounds_done"] == 0 and first["seconds_per_step_default"] == 5.0 and "short_over_default" not in first
    runs += [{"way": "short", "seconds_per_step": 1.0}, {"way": "short", "seconds_per_step": 2.0}]
    second = step_cost.summary(args, ways, runs)
    assert second["rounds_done"] == 1 and second["seconds_per_step_short"] == 1.5
    assert second["short_over_default"] == pytest.approx(0.3) and second["runs"] == runs


def test_the_cheap_80000_sample_beauty_row_s_research_settings_are_the_estimator_parameters_the_readme_names():
    """The README and examples/amazon_beauty_recipe.json give the 80,000-sample Amazon Beauty row's estimator
    parameters: those the benchmark fits with (its other difference, EASE fitted on every user while aligning on
    16,000, is the benchmark's user sample), and so its trainer and ID-factor settings."""
    from rarec import RARecommender, _params

    name = objective_study.WIDE_80000_SHORT_BF16
    assert name in objective_study.FACTORS_ON_EVERYONE and name not in objective_study.ALIGNMENT_OVERRIDES
    variant = objective_study.VARIANTS[name]
    benchmark = RARecommender(**variant)
    recipe = json.loads((Path(__file__).resolve().parents[1] / "examples" / "amazon_beauty_recipe.json").read_text())
    from_file = RARecommender(**recipe)  # rarec fit --config examples/amazon_beauty_recipe.json
    assert {k: v for k, v in from_file.get_params().items() if k != "llm"} == {
        k: v for k, v in benchmark.get_params().items() if k != "llm"}
    settings = (_params.alignment_config(benchmark, False), _params.id_factor_settings(benchmark))
    assert (_params.alignment_config(from_file, False), _params.id_factor_settings(from_file)) == settings
    assert settings[0].balance_id_blocks and not settings[0].live_random_negatives
    assert (settings[1].cooccurrence_l2, settings[1].text_rank, settings[1].text_weight) == (50.0, 512, 0.25)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "examples/amazon_beauty_recipe.json" in readme
    defaults = RARecommender().get_params()
    for key, value in variant.items():
        if value != defaults[key] and key != "lower_cache_mb":
            assert f"{key}={value!r}".replace("'", '"') in readme.replace("80_000", "80000").replace("4e-4", "0.0004"), key


def test_cold_borrowing_s_one_neighbour_is_add_items_rule_and_its_averages_are_weighted_and_rescaled():
    cold_borrowing = pytest.importorskip("cold_borrowing")
    from rarec.align._cold_items import with_cold_items
    from rarec.data import ItemText

    known = [ItemText("red planet lamp"), ItemText("blue kitchen knife"), ItemText("red kitchen lamp"),
             ItemText("green garden hose")]
    added = [ItemText("red lamp"), ItemText("kitchen knife set"), ItemText("nothing shared")]
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [-1.0, 1.0]])
    torch.testing.assert_close(cold_borrowing.neighbour_average(1, False)(embeddings, known + added),
                               with_cold_items(embeddings, known + added))
    averaged = cold_borrowing.neighbour_average(2, False)(embeddings, known + added)[4:]
    rescaled = cold_borrowing.neighbour_average(2, True)(embeddings, known + added)[4:]
    # "red lamp" shares words with items 0 and 2 only: a weighted mean of (1, 0) and (3, 3), strictly between them
    t = averaged[0, 1] / 3.0
    assert 0.0 < t < 1.0 and torch.isclose(averaged[0, 0], 1.0 + 2.0 * t)
    assert averaged[0].norm() < rescaled[0].norm() <= embeddings[2].norm()
    torch.testing.assert_close(rescaled[0] / rescaled[0].norm(), averaged[0] / averaged[0].norm())
    torch.testing.assert_close(averaged[2], embeddings.mean(0))  # no shared word: the mean embedding
    torch.testing.assert_close(cold_borrowing.neighbour_average(3, False)(embeddings, known), embeddings)


def test_cold_borrowing_s_ridge_rule_mixes_with_the_nearest_item_and_its_teacher_variants_reduce_to_rarec_s():
    cold_borrowing = pytest.importorskip("cold_borrowing")
    from rarec.align._cold_items import with_cold_items
    from rarec.cf import TextFactors
    from rarec.data import ItemText

    known = [ItemText("red planet lamp"), ItemText("blue kitchen knife"), ItemText("red kitchen lamp"),
             ItemText("green garden hose")]
    added = [ItemText("red lamp"), ItemText("kitchen knife set")]
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [-1.0, 1.0]])
    nearest = with_cold_items(embeddings, known + added)
    torch.testing.assert_close(cold_borrowing.borrowing_rule("ridge1m0")(embeddings, known + added), nearest)
    predicted = cold_borrowing.borrowing_rule("ridge1")(embeddings, known + added)[4:]
    assert not torch.allclose(predicted, nearest[4:])  # a prediction, shrunk toward the mean
    rescaled = cold_borrowing.borrowing_rule("ridge1n")(embeddings, known + added)[4:]
    torch.testing.assert_close(rescaled.norm(dim=1), nearest[4:].norm(dim=1))
    torch.testing.assert_close(rescaled / rescaled.norm(dim=1, keepdim=True),
                               predicted / predicted.norm(dim=1, keepdim=True))
    assert cold_borrowing.borrowing_rule("1") is None  # add_items's own
    factors = TextFactors.fit(known, 3)
    histories = [np.array([0, 2, 1]), np.array([3])]
    torch.testing.assert_close(cold_borrowing.recency_weighted_users(1.0)(factors, histories), factors.users(histories))
    last = cold_borrowing.recency_weighted_users(0.0)(factors, histories)  # the last item's factor alone
    torch.testing.assert_close(last, factors.users([np.array([1]), np.array([3])]))
    assert set(cold_borrowing.VECTORIZERS) >= {"words"} and cold_borrowing.VECTORIZERS["words"] == {"sublinear_tf": True}


def test_cold_calibration_separates_the_cold_items_order_from_their_level():
    import scipy.sparse as sp

    cold_calibration = pytest.importorskip("cold_calibration")
    # 120 warm items scored 0..119 (as 0.0-11.9), 5 cold items; user 0's target is cold item 121, user 1's 124
    warm = np.arange(120) / 10.0
    table = {0: np.concatenate([warm, [5.0, 11.95, 4.05, 3.05, 2.05]]),
             1: np.concatenate([warm, [1.05, 0.95, 0.85, 0.75, 20.0]])}
    held_out = sp.csr_matrix(([1.0, 1.0], ([0, 1], [121, 124])), shape=(2, 125))
    seen = sp.csr_matrix(([1.0], ([0], [119])), shape=(2, 125))  # user 0 saw the top warm item
    found = cold_calibration.level_and_order(lambda rows: torch.as_tensor(np.stack([table[r] for r in rows])),
                                             held_out, seen, n_warm=120)
    assert found["users"] == 2 and found["hr@100"] == 1.0  # ranks 0 and 0: both targets on top
    assert found["hr@10_within_cold"] == 1.0 == found["hr@100_within_cold"]
    # user 0's top 100 holds its four cold items above 2.1, user 1's the one at 20.0
    assert found["cold_share@100"] == pytest.approx((4 / 100 + 1 / 100) / 2)
    lifted = cold_calibration.level_and_order(
        lambda rows: torch.as_tensor(np.stack([table[r] + np.r_[np.zeros(120), np.full(5, 50.0)] for r in rows])),
        held_out, seen, n_warm=120)
    assert lifted["hr@10_within_cold"] == found["hr@10_within_cold"]  # the order among cold items is unchanged
    assert lifted["cold_share@100"] == 0.05 and lifted["cold_gap"] > found["cold_gap"]
    # lift: the cold items raised by so many of the user's score spreads (the seen item left out of the spread)
    spread = np.std(np.delete(table[0], 119))
    raised = cold_calibration.level_and_order(lambda rows: torch.as_tensor(np.stack([table[r] for r in rows])),
                                              held_out, seen, n_warm=120, lift=1.0)
    by_hand = cold_calibration.level_and_order(lambda rows: torch.as_tensor(np.stack(
        [table[0] + np.r_[np.zeros(120), np.full(5, spread)]])), held_out[:1], seen[:1], n_warm=120)
    assert raised["cold_gap"] > found["cold_gap"] and raised["hr@10_within_cold"] == found["hr@10_within_cold"]
    alone = cold_calibration.level_and_order(lambda rows: torch.as_tensor(np.stack([table[r] for r in rows])),
                                             held_out[:1], seen[:1], n_warm=120, lift=1.0)
    assert alone["cold_gap"] == pytest.approx(by_hand["cold_gap"])
    assert alone["cold_share@100"] == by_hand["cold_share@100"] == 0.05
    stretched = cold_calibration.level_and_order(lambda rows: torch.as_tensor(np.stack([table[r] for r in rows])),
                                                 held_out, seen, n_warm=120, stretch=2.0)
    assert stretched["cold_spread"] == pytest.approx(2 * found["cold_spread"])  # the warm items are untouched
    assert stretched["hr@100_within_cold"] == found["hr@100_within_cold"]
    assert stretched["cold_gap"] == pytest.approx(found["cold_gap"], rel=0.2)  # the mean kept (the spread moves)
    assert found["hr@100_against_warm"] == 1.0
    # user 0's 100th warm item (119 seen: the 100th of 0..118 is 1.9) and the target, in spreads above the mean
    user_0 = cold_calibration.level_and_order(lambda rows: torch.as_tensor(np.stack([table[r] for r in rows])),
                                              held_out[:1], seen[:1], n_warm=120)
    rest = np.delete(table[0], 119)
    assert user_0["warm_100th_z"] == pytest.approx((1.9 - rest.mean()) / rest.std())
    assert user_0["target_z"] == pytest.approx((11.95 - rest.mean()) / rest.std())


def test_cold_calibration_measures_the_llm_row_where_it_evaluates(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from rarec.testing import tiny_llm

    cold_calibration = pytest.importorskip("cold_calibration")
    data, log, texts, (train, pairs, cold), test = tiny_cold_split(monkeypatch)
    args = SimpleNamespace(users=30, device="cpu", data=tmp_path, llm=tiny_llm(data.item_text), cache=tmp_path / "cf",
                           text_rank=4, text_weight=0.5, samples=16, head_epochs=1)
    found = cold_calibration.llm_levels(0, train, test, texts, cold, args, teacher_gap=1.0, teacher_spread=3.0)
    assert found["at_teacher_shape"]["cold_spread"] == pytest.approx(3.0)
    per_user = found["at_teacher_level_per_user"]  # each user's cold items at the model's ID vectors' gap
    assert per_user["cold_gap"] == pytest.approx(found["id_vectors_in_model"]["cold_gap"], rel=0.2)
    assert -1.0 <= found["gap_correlation"] <= 1.0 and per_user["hr@100_within_cold"] == found["hr@100_within_cold"]
    lifted = found["at_teacher_level"]  # the cold items lifted to a mean gap of one spread
    assert lifted["cold_gap"] > found["cold_gap"] and lifted["hr@100"] >= found["hr@100"]
    assert lifted["hr@100_within_cold"] == found["hr@100_within_cold"]
    assert found["users"] > 0 and 0.0 <= found["hr@10_within_cold"] <= found["hr@100_within_cold"] <= 1.0
    assert found["hr@100"] == pytest.approx(found["row_hr@100"])  # the same users and ranking as the row's
    assert 0.0 <= found["cold_share@100"] <= 1.0 and not found["resumed"]
