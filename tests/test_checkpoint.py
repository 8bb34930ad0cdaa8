"""Interruption: checkpoints of a fit in progress, resuming, and atomic writes."""

import json

import numpy as np
import pytest
import torch

from rarec import RARecommender
from rarec._checkpoint import LATEST, read_checkpoint, write_checkpoint
from rarec import ModelFormatError
from rarec.testing import tiny_llm

from .test_estimator import small, synthetic_split


@pytest.fixture(scope="module")
def data():
    X, _, text = synthetic_split()
    return X, text, tiny_llm(text)


def fitted(llm, **kw):
    # 64 samples, batch 16: 4 steps per epoch, 3 epochs; patience 3 so that no epoch is skipped
    return small(llm, **{"epochs": 3, "patience": 3, **kw})


def interrupt_at_step(monkeypatch, step):
    """Make the ranking loss raise KeyboardInterrupt at training step ``step`` (1-based, over all epochs)."""
    import rarec.align._trainer as trainer

    original = trainer.ranking_loss
    calls = {"n": 0}

    def loss(*args):
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(trainer, "ranking_loss", loss)
    return monkeypatch


def count_heads_training(monkeypatch) -> dict:
    """Count the trainer's runs of the output heads' stage (``calls["n"]``) while the patch holds."""
    import rarec.align._trainer as trainer

    calls, original = {"n": 0}, trainer._train_heads

    def counted(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "_train_heads", counted)
    return calls


def weights(rec):
    return {k: v.clone() for k, v in rec.aligner_.state_dict().items()}


@pytest.mark.parametrize("stop_at, negatives", [(3, "in_batch"), (7, "in_batch"),  # mid epoch 1; epoch 2
                                                (3, "catalogue")])  # the bank, refreshed at step 2, must resume too
def test_an_interrupted_and_resumed_fit_ends_with_the_same_weights(data, tmp_path, monkeypatch, stop_at, negatives):
    X, text, llm = data
    straight = fitted(llm, negatives=negatives, bank_refresh=2).fit(X, item_text=text)

    with monkeypatch.context() as patch:
        interrupt_at_step(patch, stop_at)
        with pytest.raises(KeyboardInterrupt):
            fitted(llm, negatives=negatives, bank_refresh=2, checkpoint_dir=tmp_path,
                   checkpoint_every=2).fit(X, item_text=text)
    state, _ = read_checkpoint(tmp_path)
    assert state["global_step"] == (stop_at - 1) // 2 * 2 or state["step"] == 0  # the last checkpoint before the stop

    resumed = fitted(llm, negatives=negatives, bank_refresh=2, checkpoint_dir=tmp_path,
                     checkpoint_every=2).fit(X, item_text=text, resume=True)
    for name, value in weights(straight).items():
        torch.testing.assert_close(weights(resumed)[name], value, rtol=0, atol=0)
    assert [r["loss"] for r in resumed.training_log_] == pytest.approx([r["loss"] for r in straight.training_log_])
    users = np.unique(X[:, 0])[:10]
    np.testing.assert_array_equal(resumed.predict(users), straight.predict(users))


def test_a_finished_fit_resumes_to_the_same_model_without_training(data, tmp_path, monkeypatch):
    X, text, llm = data
    first = fitted(llm, checkpoint_dir=tmp_path).fit(X, item_text=text)
    with monkeypatch.context() as patch:
        interrupt_at_step(patch, 1)  # any training step would raise
        again = fitted(llm, checkpoint_dir=tmp_path).fit(X, item_text=text, resume=True)
    for name, value in weights(first).items():
        torch.testing.assert_close(weights(again)[name], value, rtol=0, atol=0)


def test_a_fit_without_a_seed_resumes_with_the_seed_it_drew(data, tmp_path, monkeypatch):
    X, text, llm = data
    with monkeypatch.context() as patch:
        interrupt_at_step(patch, 3)
        with pytest.raises(KeyboardInterrupt):
            fitted(llm, random_state=None, checkpoint_dir=tmp_path, checkpoint_every=2).fit(X, item_text=text)
    resumed = fitted(llm, random_state=None, checkpoint_dir=tmp_path, checkpoint_every=2).fit(X, item_text=text,
                                                                                             resume=True)
    straight = fitted(llm, random_state=resumed.seed_).fit(X, item_text=text)
    for name, value in weights(straight).items():
        torch.testing.assert_close(weights(resumed)[name], value, rtol=0, atol=0)


def test_resuming_with_other_parameters_or_data_is_refused(data, tmp_path):
    X, text, llm = data
    fitted(llm, checkpoint_dir=tmp_path, epochs=1).fit(X, item_text=text)
    with pytest.raises(ValueError, match="other parameters, seed or data"):
        fitted(llm, checkpoint_dir=tmp_path, epochs=1, lr=0.5).fit(X, item_text=text, resume=True)
    with pytest.raises(ValueError, match="other parameters, seed or data"):
        fitted(llm, checkpoint_dir=tmp_path, epochs=1).fit(X[:-5], item_text=text, resume=True)


def test_resuming_with_another_research_setting_is_refused(data, tmp_path, monkeypatch):
    """The trainer's and the ID factors' settings are part of the fingerprint, also those that are not estimator
    parameters (the benchmarks change them, benchmarks/common.py) and those that became parameters."""
    import dataclasses

    from rarec import _params

    X, text, llm = data
    fitted(llm, checkpoint_dir=tmp_path, epochs=1).fit(X, item_text=text)
    for changed in (dict(random_negative_gradients=False), dict(cooccurrence_l2=50.0), dict(balance_id_blocks=True),
                    dict(text_factors=4), dict(text_factor_weight=0.5)):
        with pytest.raises(ValueError, match="other parameters, seed or data"):
            fitted(llm, checkpoint_dir=tmp_path, epochs=1, **changed).fit(X, item_text=text, resume=True)
    original_prefix = _params.prefix_config
    with monkeypatch.context() as patch:
        patch.setattr(_params, "prefix_config", lambda rec, id_dim: dataclasses.replace(original_prefix(rec, id_dim),
                                                                                       pooling="mean"))
        with pytest.raises(ValueError, match="other parameters, seed or data"):
            fitted(llm, checkpoint_dir=tmp_path, epochs=1).fit(X, item_text=text, resume=True)
    with monkeypatch.context() as patch:  # one ID token per block of the ID vector (session 59)
        patch.setattr(_params, "prefix_config", lambda rec, id_dim: dataclasses.replace(original_prefix(rec, id_dim),
                                                                                       id_blocks=(2, 3)))
        with pytest.raises(ValueError, match="other parameters, seed or data"):
            fitted(llm, checkpoint_dir=tmp_path, epochs=1).fit(X, item_text=text, resume=True)
    original_config = _params.alignment_config
    with monkeypatch.context() as patch:
        patch.setattr(_params, "alignment_config", lambda rec, progress: dataclasses.replace(
            original_config(rec, progress), id_dropout=0.5, borrowed_teacher=True))
        fitted(llm, checkpoint_dir=tmp_path / "borrowed", epochs=1).fit(X, item_text=text)
    with monkeypatch.context() as patch:  # the same share of ID dropout, without the borrowed teacher
        patch.setattr(_params, "alignment_config", lambda rec, progress: dataclasses.replace(
            original_config(rec, progress), id_dropout=0.5))
        with pytest.raises(ValueError, match="other parameters, seed or data"):
            fitted(llm, checkpoint_dir=tmp_path / "borrowed", epochs=1).fit(X, item_text=text, resume=True)
    with monkeypatch.context() as patch:  # each column of a block balanced too (session 60)
        patch.setattr(_params, "alignment_config", lambda rec, progress: dataclasses.replace(
            original_config(rec, progress), balance_id_columns=True))
        with pytest.raises(ValueError, match="other parameters, seed or data"):
            fitted(llm, checkpoint_dir=tmp_path, epochs=1).fit(X, item_text=text, resume=True)
    fitted(llm, checkpoint_dir=tmp_path, epochs=1).fit(X, item_text=text, resume=True)  # the same ones resume


def test_trainer_settings_added_later_leave_the_fingerprints_of_earlier_checkpoints_as_they_were(data, monkeypatch,
                                                                                                  tmp_path):
    """The fingerprint holds the trainer's settings whole; one added after checkpoints were written is named only
    when set, so a checkpoint of session 57 (whose trainer had exactly these fields) still resumes."""
    import rarec._fit_steps as fit_steps
    from rarec._fit_checkpoint import FitCheckpointer

    session_57 = {"loss", "align_weight", "temperature", "n_random_negatives", "negatives", "logq", "bank_refresh",
                  "distill", "distill_temperature", "cooccurrence_teacher", "epochs", "batch_size", "lr",
                  "weight_decay", "max_grad_norm", "patience", "head_epochs", "head_lr", "head_batch_size",
                  "head_hidden", "history_pooling", "id_dropout", "live_random_negatives", "balance_id_blocks",
                  "lower_cache_mb", "progress"}
    X, text, llm = data
    stamped = []
    monkeypatch.setattr(FitCheckpointer, "stamp_of", staticmethod(lambda params, seed, log: stamped.append(params)
                                                                  or "stamp"))
    fit_steps.make_checkpointer(fitted(llm, checkpoint_dir=tmp_path), 0, None, fit_steps.Group())
    assert set(stamped[0]["derived"]["alignment"]) == session_57


def test_resume_needs_a_checkpoint_dir_and_warns_when_it_is_empty(data, tmp_path):
    X, text, llm = data
    with pytest.raises(ValueError, match="needs checkpoint_dir"):
        fitted(llm, epochs=1).fit(X, item_text=text, resume=True)
    with pytest.warns(UserWarning, match="holds no checkpoint"):
        fitted(llm, epochs=1, checkpoint_dir=tmp_path / "empty").fit(X, item_text=text, resume=True)


def test_a_crash_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    write_checkpoint(tmp_path, "step-1", {"epoch": 1}, {"w": torch.ones(3)})
    import rarec._checkpoint as module

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(module, "save_file", crash)
    with pytest.raises(OSError):
        write_checkpoint(tmp_path, "step-2", {"epoch": 2}, {"w": torch.zeros(3)})
    state, tensors = read_checkpoint(tmp_path)
    assert state["epoch"] == 1 and tensors["w"].sum() == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left behind


def test_a_damaged_checkpoint_is_a_clear_error(tmp_path):
    write_checkpoint(tmp_path, "step-1", {"epoch": 1}, {"w": torch.ones(3)})
    (tmp_path / "step-1" / "tensors.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ModelFormatError, match="damaged|cannot be read"):
        read_checkpoint(tmp_path)
    (tmp_path / LATEST).write_text(json.dumps({"checkpoint": "../elsewhere"}))
    with pytest.raises(ModelFormatError, match="invalid checkpoint"):
        read_checkpoint(tmp_path)


def test_item_encoding_resumes_where_it_stopped(data, tmp_path, monkeypatch):
    from rarec.align import Towers

    X, text, llm = data
    monkeypatch.setattr(Towers, "encode_batch", 8)  # 48 items, 16 per checkpoint: three parts
    straight = fitted(llm, epochs=1).fit(X, item_text=text)
    original, state = Towers.encode_items, {"parts": 0}

    def encode_items(self, items, progress=False):
        if len(items) < self.n_items:  # a part of the final encoding (validation encodes every item at once)
            state["parts"] += 1
            if state["parts"] == 2:
                raise KeyboardInterrupt
        return original(self, items, progress)

    with monkeypatch.context() as patch:
        patch.setattr(Towers, "encode_items", encode_items)
        with pytest.raises(KeyboardInterrupt):
            fitted(llm, epochs=1, checkpoint_dir=tmp_path, checkpoint_every=2).fit(X, item_text=text)
    saved, tensors = read_checkpoint(tmp_path / "item_vectors")
    assert int(tensors["done"].sum()) == 16  # the first part was kept

    counted = {"items": 0}

    def counting(self, items, progress=False):
        counted["items"] += len(items) if len(items) < self.n_items else 0
        return original(self, items, progress)

    with monkeypatch.context() as patch:
        patch.setattr(Towers, "encode_items", counting)
        resumed = fitted(llm, epochs=1, checkpoint_dir=tmp_path, checkpoint_every=2).fit(X, item_text=text,
                                                                                           resume=True)
    assert counted["items"] == resumed.n_items_ - 16  # only the rest was encoded again
    torch.testing.assert_close(resumed.item_vectors_, straight.item_vectors_, rtol=0, atol=1e-6)


@pytest.mark.parametrize("head_epochs, kept", [(2, False), (30, True)])  # the validation check drops / keeps them
def test_a_fit_stopped_after_the_output_heads_resumes_without_training_them_again(data, tmp_path, monkeypatch,
                                                                                  head_epochs, kept):
    import rarec._fit_steps as fit_steps
    import rarec.align._trainer as trainer

    X, text, llm = data
    straight = fitted(llm, epochs=1, head_epochs=head_epochs).fit(X, item_text=text)
    assert straight.training_log_[-1]["kept"] is kept

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(fit_steps, "encode_catalogue", stop)  # the final encoding, after the heads' stage
        with pytest.raises(KeyboardInterrupt):
            fitted(llm, epochs=1, head_epochs=head_epochs, checkpoint_dir=tmp_path).fit(X, item_text=text)
    assert (tmp_path / "heads").is_dir()
    with monkeypatch.context() as patch:
        patch.setattr(trainer, "_train_heads", stop)  # resuming must not train them again
        resumed = fitted(llm, epochs=1, head_epochs=head_epochs, checkpoint_dir=tmp_path).fit(X, item_text=text,
                                                                                               resume=True)
    def record(rec):  # the heads' stage, as logged (its timing aside)
        return {k: v for k, v in rec.training_log_[-1].items() if k != "seconds"}

    assert record(resumed)["stage"] == "output_heads"
    assert record(resumed) == record(straight)
    for name, value in weights(straight).items():
        torch.testing.assert_close(weights(resumed)[name], value, rtol=0, atol=0)
    torch.testing.assert_close(resumed.item_vectors_, straight.item_vectors_, rtol=0, atol=1e-6)
    users = np.unique(X[:, 0])[:10]
    np.testing.assert_array_equal(resumed.predict(users), straight.predict(users))

    with monkeypatch.context() as patch:  # a fresh fit (no resume) in the same folder trains its own heads
        calls = count_heads_training(patch)
        fitted(llm, epochs=1, head_epochs=head_epochs, checkpoint_dir=tmp_path).fit(X, item_text=text)
    assert calls["n"] == 1


def test_a_fresh_fit_clears_what_an_earlier_fit_left_so_a_resume_never_mixes_them(data, tmp_path, monkeypatch):
    X, text, llm = data
    fitted(llm, epochs=1, head_epochs=2, checkpoint_dir=tmp_path).fit(X, item_text=text)
    assert {"heads", "item_vectors", LATEST} <= {p.name for p in tmp_path.iterdir()}
    (tmp_path / "notes.txt").write_text("the user's own file")

    with monkeypatch.context() as patch:  # a fresh fit stopped at its first step, before any checkpoint of its own
        interrupt_at_step(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            fitted(llm, epochs=1, head_epochs=2, checkpoint_dir=tmp_path).fit(X, item_text=text)
    assert not (tmp_path / "heads").exists() and not (tmp_path / "item_vectors").exists()
    assert not (tmp_path / LATEST).exists() and (tmp_path / "notes.txt").read_text() == "the user's own file"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("step-")] == []

    calls = count_heads_training(monkeypatch)
    with pytest.warns(UserWarning, match="holds no checkpoint"):  # nothing of the earlier fit is resumed
        fitted(llm, epochs=1, head_epochs=2, checkpoint_dir=tmp_path).fit(X, item_text=text, resume=True)
    assert calls["n"] == 1


def test_a_fit_stopped_in_the_middle_of_the_output_heads_resumes_after_their_last_saved_epoch(data, tmp_path,
                                                                                             monkeypatch):
    import rarec.align._trainer as trainer

    X, text, llm = data
    # 64 samples, batch 16: 4 head steps an epoch; checkpoint_every=6 saves after epochs 2 and 4 (6 steps apart)
    settings = dict(epochs=1, head_epochs=5, checkpoint_every=6)
    straight = fitted(llm, **settings).fit(X, item_text=text)
    original, steps = trainer._optimizer_step, {"n": 0, "stop": 15}  # stopped at epoch 4's third step

    def counted(*args, heads=False, **kwargs):
        if heads:
            steps["n"] += 1
            if steps["n"] == steps["stop"]:
                raise KeyboardInterrupt
        return original(*args, heads=heads, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "_optimizer_step", counted)
        with pytest.raises(KeyboardInterrupt):
            fitted(llm, **settings, checkpoint_dir=tmp_path).fit(X, item_text=text)
        assert read_checkpoint(tmp_path / "head_epochs")[0]["epoch"] == 2
        steps.update(n=0, stop=None)
        resumed = fitted(llm, **settings, checkpoint_dir=tmp_path).fit(X, item_text=text, resume=True)
    assert steps["n"] == 3 * 4  # epochs 3 to 5 only
    assert not (tmp_path / "head_epochs").exists() and (tmp_path / "heads").is_dir()  # the stage's own supersedes
    record = {k: v for k, v in resumed.training_log_[-1].items() if k != "seconds"}
    assert record == {k: v for k, v in straight.training_log_[-1].items() if k != "seconds"}  # its loss too
    for name, value in weights(straight).items():
        torch.testing.assert_close(weights(resumed)[name], value, rtol=0, atol=0)
    users = np.unique(X[:, 0])[:10]
    np.testing.assert_array_equal(resumed.predict(users), straight.predict(users))

    with monkeypatch.context() as patch:  # stopped in the heads again; a fresh fit then removes their progress
        steps.update(n=0, stop=10)
        patch.setattr(trainer, "_optimizer_step", counted)
        with pytest.raises(KeyboardInterrupt):
            fitted(llm, **settings, checkpoint_dir=tmp_path).fit(X, item_text=text)
        assert (tmp_path / "head_epochs").is_dir()
        interrupt_at_step(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            fitted(llm, **settings, checkpoint_dir=tmp_path).fit(X, item_text=text)
    assert not (tmp_path / "head_epochs").exists()


def test_the_heads_last_epoch_is_saved_once_as_the_stage_s_own_checkpoint(data, tmp_path, monkeypatch):
    from rarec._fit_checkpoint import FitCheckpointer

    X, text, llm = data
    saved, original = [], FitCheckpointer.write_head_epochs

    def recorded(self, meta, tensors):
        saved.append(meta["epoch"])
        return original(self, meta, tensors)

    monkeypatch.setattr(FitCheckpointer, "write_head_epochs", recorded)
    # 4 head steps an epoch: checkpoint_every=4 saves after every epoch but the last, which heads/ holds instead
    fitted(llm, epochs=1, head_epochs=3, checkpoint_every=4, checkpoint_dir=tmp_path).fit(X, item_text=text)
    assert saved == [1, 2]
    assert not (tmp_path / "head_epochs").exists() and (tmp_path / "heads").is_dir()


def test_a_checkpoint_written_with_a_research_override_resumes_with_the_parameter_that_replaced_it(data, tmp_path,
                                                                                                   monkeypatch):
    """``cooccurrence_l2``, ``text_factors``, ``text_factor_weight``, ``balance_id_blocks`` and
    ``random_negative_gradients`` were research settings (changed through ``_params``) before they were
    parameters: they are fingerprinted through those settings, so a fit checkpointed with the override resumes
    under the parameter, and the parameters at their defaults leave every earlier stamp as it was."""
    import dataclasses

    from rarec import _params

    X, text, llm = data
    original_config, original_factors = _params.alignment_config, _params.id_factor_settings
    with monkeypatch.context() as patch:
        patch.setattr(_params, "alignment_config", lambda rec, progress: dataclasses.replace(
            original_config(rec, progress), live_random_negatives=False, balance_id_blocks=True))
        patch.setattr(_params, "id_factor_settings", lambda rec: dataclasses.replace(original_factors(rec),
                                                                                     cooccurrence_l2=50.0))
        fitted(llm, checkpoint_dir=tmp_path, epochs=1).fit(X, item_text=text)
    as_parameters = dict(random_negative_gradients=False, balance_id_blocks=True, cooccurrence_l2=50.0)
    fitted(llm, checkpoint_dir=tmp_path, epochs=1, **as_parameters).fit(X, item_text=text, resume=True)
    with pytest.raises(ValueError, match="other parameters, seed or data"):
        fitted(llm, checkpoint_dir=tmp_path, epochs=1).fit(X, item_text=text, resume=True)
