import csv
import io
import json
import re

import pytest
import torch
from click.testing import CliRunner

from rarec import __version__
from rarec.cli import main
from rarec._scoring import FUSION_WEIGHTS

from rarec.testing import tiny_llm


def test_version_and_info():
    runner = CliRunner()
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    result = runner.invoke(main, ["info"])
    assert result.exit_code == 0
    for name in ("rarec", "torch", "transformers", "device", "default LLM"):
        assert re.search(rf"^{name}\s+\S+", result.output, re.M), result.output


def test_demo_cf_only_prints_a_table_on_stdout_and_progress_on_stderr():
    result = CliRunner().invoke(main, ["demo", "--cf-only", "--users", "60", "--items", "40", "-k", "5"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["model", "hr@5", "ndcg@5", "mrr@5"]
    assert [line.split()[0] for line in lines[2:]] == ["popularity", "sasrec"]
    assert "synthetic catalogue: 60 users" in result.stderr
    quiet = CliRunner().invoke(main, ["demo", "--cf-only", "--users", "60", "--items", "40", "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_demo_full_pipeline_with_a_local_llm(tmp_path):
    from rarec.data import make_interactions

    _, text = make_interactions(n_users=60, n_items=40, random_state=0)
    model, tokenizer = tiny_llm(text)
    model.save_pretrained(tmp_path / "llm")
    tokenizer.save_pretrained(tmp_path / "llm")
    result = CliRunner().invoke(main, ["demo", "--users", "60", "--items", "40", "--llm", str(tmp_path / "llm"),
                                       "--epochs", "1", "--samples", "32", "-q"])
    assert result.exit_code == 0, result.output
    names = [line.split("  ")[0].strip() for line in result.stdout.strip().splitlines()[2:]]
    assert names == ["popularity", "sasrec (CF only)", "RA-Rec (sasrec)"]


@pytest.mark.parametrize("args", [["demo", "--users", "1"], ["demo", "--backbone", "gru4rec"]])
def test_usage_errors_exit_with_2(args):
    assert CliRunner().invoke(main, args).exit_code == 2


# --------------------------------------------------------- fit / recommend / evaluate / info MODEL_DIR
@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A CSV log with titles, a held-out file, a local tiny LLM, and a model fitted by `rarec fit`."""
    from rarec.data import make_interactions
    from rarec.model_selection import leave_last_out

    root = tmp_path_factory.mktemp("cli")
    log, text = make_interactions(n_users=40, n_items=30, n_categories=3, max_length=12, random_state=2)
    split = leave_last_out(log, n_valid=0)
    for name, part in (("train.csv", split.train), ("test.csv", split.test)):
        rows = part.to_array()
        (root / name).write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    (root / "items.csv").write_text("item_id,title\n" + "".join(f'{i},"{t.title}"\n' for i, t in text.items()))
    model, tokenizer = tiny_llm(text)
    model.save_pretrained(root / "llm")
    tokenizer.save_pretrained(root / "llm")
    (root / "params.json").write_text(json.dumps({"backbone_params": {"dim": 16, "max_len": 10, "inner_dim": 32,
                                                                       "n_layers": 1}, "batch_size": 8}))
    result = CliRunner().invoke(main, [
        "fit", str(root / "train.csv"), "--items", str(root / "items.csv"), "--output", str(root / "model"),
        "--llm", str(root / "llm"), "--epochs", "1", "--cf-epochs", "3", "--samples", "32", "--seed", "0",
        "--device", "cpu", "--llm-dtype", "float32", "--score-fusion", "auto", "--config", str(root / "params.json"),
        "--prefix-layers", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert "saved" in result.stdout and "40 users" in result.stdout
    return root


@pytest.mark.parametrize("rank", [None, "1"])
def test_fit_reports_the_data_on_rank_zero_only(workspace, tmp_path, monkeypatch, rank):
    if rank is not None:  # as torchrun sets it for the second process (a one-process group here)
        monkeypatch.setenv("RANK", rank)
    else:
        monkeypatch.delenv("RANK", raising=False)
    result = CliRunner().invoke(main, [
        "fit", str(workspace / "train.csv"), "--items", str(workspace / "items.csv"), "-o", str(tmp_path / "m"),
        "--llm", str(workspace / "llm"), "--epochs", "1", "--cf-epochs", "1", "--samples", "8", "--seed", "0",
        "--device", "cpu", "--config", str(workspace / "params.json"), "-q"])
    assert result.exit_code == 0, result.output
    assert ("40 users, 30 items" in result.stderr) == (rank is None)


def test_fit_into_a_folder_another_save_holds_is_one_error_line(workspace, tmp_path, monkeypatch, hold_save_lock):
    import rarec._save_lock as save_lock

    monkeypatch.setattr(save_lock, "WAIT_SECONDS", 0.2)
    hold_save_lock(tmp_path / "m")
    result = CliRunner().invoke(main, [
        "fit", str(workspace / "train.csv"), "--items", str(workspace / "items.csv"), "-o", str(tmp_path / "m"),
        "--llm", str(workspace / "llm"), "--epochs", "1", "--cf-epochs", "1", "--samples", "8", "--seed", "0",
        "--device", "cpu", "--config", str(workspace / "params.json"), "-q"])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "another save into" in errors[0] and "Traceback" not in result.output


def test_fit_saves_a_loadable_model(workspace):
    from rarec import RARecommender

    rec = RARecommender.load(workspace / "model")
    assert rec.backbone_params["dim"] == 16 and rec.epochs == 1 and rec.random_state == 0
    assert rec.prefix_layers == 1 and rec.aligner_.user_prefix.n_layers == 1
    assert rec.llm_dtype == "float32" and rec.llm_.dtype == torch.float32
    assert rec.score_fusion == "auto" and rec.score_fusion_ in FUSION_WEIGHTS
    assert rec.prompts_.titles[0] != "an item without a description"  # the titles were used


def test_recommend_writes_csv_for_chosen_users(workspace):
    result = CliRunner().invoke(main, ["recommend", str(workspace / "model"), "--user", "0", "--user", "3", "-k", "4"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["user_id", "rank", "item_id", "score"]
    assert [r[0] for r in rows[1:]] == ["0"] * 4 + ["3"] * 4
    assert [r[1] for r in rows[1:5]] == ["1", "2", "3", "4"]
    scores = [float(r[3]) for r in rows[1:5]]
    assert scores == sorted(scores, reverse=True)


def test_recommend_from_a_users_file_to_an_output_file(workspace, tmp_path):
    (tmp_path / "users.txt").write_text("user_id\n1\n2\n")
    out = tmp_path / "recs.csv"
    result = CliRunner().invoke(main, ["recommend", str(workspace / "model"), "--users", str(tmp_path / "users.txt"),
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(out.open()))
    assert len(rows) == 1 + 2 * 10 and {r[0] for r in rows[1:]} == {"1", "2"}
    everyone = CliRunner().invoke(main, ["recommend", str(workspace / "model"), "-k", "1"])
    assert len(everyone.stdout.strip().splitlines()) == 1 + 40


def test_evaluate_prints_a_table(workspace):
    result = CliRunner().invoke(main, ["evaluate", str(workspace / "model"), str(workspace / "test.csv"),
                                       "-k", "5,10", "-k", "20"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["k", "hr", "ndcg", "mrr"]
    assert [line.split()[0] for line in lines[2:]] == ["5", "10", "20"]
    hr = [float(line.split()[1]) for line in lines[2:]]
    assert hr == sorted(hr) and 0 < hr[-1] <= 1


def test_info_describes_a_saved_model(workspace):
    result = CliRunner().invoke(main, ["info", str(workspace / "model")])
    assert result.exit_code == 0, result.output
    assert re.search(r"^users\s+40 \(int ids\)", result.stdout, re.M)
    assert re.search(r"^backbone\s+sasrec", result.stdout, re.M)
    # one prefix epoch, then the output heads (a default), kept or dropped by validation
    assert re.search(r"^alignment\s+1 epoch\(s\), output heads (kept|dropped .*), best validation NDCG@10 0\.\d{4}$",
                     result.stdout, re.M), result.stdout


def _fails_with(args, pattern, code=1):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, result.output
    if code == 1:
        assert re.search(pattern, result.stderr), result.stderr
        assert "Traceback" not in result.stderr
    return result


def test_unknown_users_are_skipped_and_counted_and_ids_may_be_written_as_floats(workspace):
    model = str(workspace / "model")
    result = CliRunner().invoke(main, ["recommend", model, "--user", "1", "--user", "999", "--user", "2.0", "-k", "3"])
    assert result.exit_code == 0, result.output
    assert "skipped 1 user id(s) unknown to this model (first: 999)" in result.stderr
    assert sorted({line.split(",")[0] for line in result.stdout.splitlines()[1:]}) == ["1", "2"]
    assert "histories=" not in result.stderr


def test_main_failure_paths(workspace, tmp_path):
    model = str(workspace / "model")
    _fails_with(["recommend", model, "--user", "999"], r"^error: none of the 1 user id\(s\) is known to this model "
                                                       r"\(first: 999\)")
    _fails_with(["recommend", model, "--user", "alice"], r"unknown user id 'alice'")
    _fails_with(["recommend", str(tmp_path), "--user", "1"], r"holds no config.json: it is not a rarec model")
    _fails_with(["info", str(tmp_path)], r"not a rarec model")
    _fails_with(["evaluate", model, str(tmp_path / "missing.csv")], "", code=2)  # click: no such file
    (tmp_path / "bad.csv").write_text("user_id,item_id\n1,2\nx\n")
    _fails_with(["fit", str(tmp_path / "bad.csv"), "-o", str(tmp_path / "m")], r"bad.csv")
    (tmp_path / "data.xyz").write_text("1,2\n")
    _fails_with(["fit", str(tmp_path / "data.xyz"), "-o", str(tmp_path / "m")], r"cannot tell the format")
    (tmp_path / "params.json").write_text('{"learning_rate": 1}')
    _fails_with(["fit", str(workspace / "train.csv"), "-o", str(tmp_path / "m"), "--config",
                 str(tmp_path / "params.json")], r"unknown parameters \['learning_rate'\]")
    _fails_with(["fit", str(workspace / "train.csv"), "-o", str(tmp_path / "m"), "--format", "parquet"], "", code=2)
    _fails_with(["fit", str(workspace / "train.csv"), "-o", str(tmp_path / "m"), "--prefix-layers", "top"], "", code=2)
    _fails_with(["fit", str(workspace / "train.csv"), "-o", str(tmp_path / "m"), "--score-fusion", "best"], "", code=2)
    _fails_with(["recommend", model, "--user", "1", "--users", str(workspace / "params.json")], "", code=2)


def test_debug_shows_the_traceback(tmp_path):
    result = CliRunner().invoke(main, ["--debug", "info", str(tmp_path)])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)


def test_an_interrupted_fit_says_how_to_resume_and_resume_finishes_it(workspace, tmp_path, monkeypatch):
    from rarec import RARecommender

    args = ["fit", str(workspace / "train.csv"), "--items", str(workspace / "items.csv"), "--output",
            str(tmp_path / "model"), "--llm", str(workspace / "llm"), "--epochs", "2", "--cf-epochs", "2",
            "--samples", "32", "--seed", "0", "--config", str(workspace / "params.json"),
            "--checkpoint-dir", str(tmp_path / "ckpt"), "--checkpoint-every", "2", "-q"]
    import rarec.align._trainer as trainer

    original, calls = trainer.ranking_loss, {"n": 0}

    def interrupted(*a):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*a)

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "ranking_loss", interrupted)
        result = CliRunner().invoke(main, args)
    assert result.exit_code == 130, (calls, result.output)
    assert "--resume" in result.stderr and str(tmp_path / "ckpt") in result.stderr
    assert not (tmp_path / "model").exists() and (tmp_path / "ckpt" / "latest.json").exists()
    resumed = CliRunner().invoke(main, args + ["--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert RARecommender.load(tmp_path / "model").epochs == 2
    assert CliRunner().invoke(main, args[:-6] + ["--resume", "-q"]).exit_code == 2  # --resume without a folder


def test_fit_categories_sep_keeps_recbole_category_paths_whole(tmp_path, monkeypatch):
    import rarec

    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "shop.inter").write_text("user_id:token\titem_id:token\n" + "".join(
        f"{u}\t{i}\n" for u in range(3) for i in ("A", "B")))
    (folder / "shop.item").write_text("item_id:token\ttitle:token_seq\tcategories:token_seq\n"
                                      "A\tRed lipstick\tBeauty Makeup Lips\nB\tHair gel\tBeauty Creams, Gels\n")
    seen = {}

    def fake_fit(self, log, item_text=None, resume=False):
        seen["categories"] = item_text["B"].categories
        raise KeyboardInterrupt

    monkeypatch.setattr(rarec.RARecommender, "fit", fake_fit)
    args = ["fit", str(folder), "-o", str(tmp_path / "model"), "-q"]
    assert CliRunner().invoke(main, [*args, "--categories-sep", ""]).exit_code == 130
    assert seen["categories"] == ("Beauty Creams, Gels",)
    assert CliRunner().invoke(main, args).exit_code == 130
    assert seen["categories"] == ("Beauty", "Creams,", "Gels")
    csv_file = tmp_path / "log.csv"
    csv_file.write_text("user_id,item_id\n1,2\n")
    wrong = CliRunner().invoke(main, ["fit", str(csv_file), "-o", str(tmp_path / "m2"), "--categories-sep", ""])
    assert wrong.exit_code == 2 and "only RecBole data" in wrong.output
