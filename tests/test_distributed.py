"""Data-parallel alignment training with torchrun (gloo, 2 CPU processes) equals one process with the global batch."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rarec._distributed import Group

SCRIPT = textwrap.dedent('''
    import atexit, os, sys
    import torch.distributed as dist
    from safetensors.torch import save_file
    from rarec import RARecommender
    from rarec.data import make_interactions
    from rarec.model_selection import leave_last_out
    from rarec.testing import tiny_llm

    rank = os.environ.get("RANK", "0")
    # atexit runs last-registered first: this runs after rarec's own exit handler and records what it left
    atexit.register(lambda: open(f"open-at-exit-{rank}.txt", "w").write(str(dist.is_initialized())))
    batch, out = int(sys.argv[1]), sys.argv[2]
    seed = None if len(sys.argv) > 3 else 0  # no seed: rank 0's draw is shared
    log, text = make_interactions(n_users=120, n_items=48, n_categories=4, random_state=0)
    X = leave_last_out(log, n_valid=0).train.to_array()
    rec = RARecommender(llm=tiny_llm(text), backbone_params=dict(dim=32, n_layers=1, n_heads=2, inner_dim=64,
                        dropout=0.1, max_len=20), cf_epochs=3, epochs=2, max_train_samples=32, sample_fraction=None,
                        batch_size=batch, n_random_negatives=3, verbose=0, random_state=seed, device="cpu")
    rec.fit(X, item_text=text)
    with open(f"seed-{rank}.txt", "w") as f:  # one file per rank: prints would interleave
        f.write(str(rec.seed_))
    if rank == "0":
        tensors = {f"aligner.{k}": v.contiguous() for k, v in rec.aligner_.state_dict().items()}
        tensors.update(item_vectors=rec.item_vectors_, user_vectors=rec.user_vectors_)
        save_file(tensors, out)
        print("losses", [r["loss"] for r in rec.training_log_])
''')


def run(args, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_two_gloo_processes_with_batch_b_equal_one_process_with_batch_2b(tmp_path):
    script = tmp_path / "fit.py"
    script.write_text(SCRIPT)
    single = run([sys.executable, str(script), "8", "single.safetensors"], tmp_path)
    double = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                  str(script), "4", "double.safetensors"], tmp_path)
    one, two = load_file(str(tmp_path / "single.safetensors")), load_file(str(tmp_path / "double.safetensors"))
    assert one.keys() == two.keys()
    for name in one:
        # Adam divides each gradient by its own running scale, so where a gradient is nearly zero (the value half
        # of the instructions starts at zero) the ~1e-9 noise of a different summation order becomes ~1e-5 in a
        # weight; the vectors the model ranks with agree to ~1e-6.
        atol = 1e-4 if name.startswith("aligner.") else 1e-5
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=atol, msg=name)
    assert single.split("losses")[1] and double.split("losses")[1]
    # the group rarec opened is closed before interpreter shutdown (left open, gloo could abort a rank at exit)
    assert [(tmp_path / f"open-at-exit-{rank}.txt").read_text() for rank in (0, 1)] == ["False", "False"]


@pytest.mark.slow
def test_without_a_seed_every_rank_uses_rank_0s_draw(tmp_path):
    script = tmp_path / "fit.py"
    script.write_text(SCRIPT)
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), "4", "unseeded.safetensors", "no-seed"], tmp_path)
    seeds = [(tmp_path / f"seed-{rank}.txt").read_text() for rank in (0, 1)]
    assert seeds[0] == seeds[1]


def test_shard_and_gather_rows_are_inverse_orders():
    values = np.arange(11)
    parts = [Group(rank, 3).shard(values) for rank in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == values.tolist()
    assert [len(p) for p in parts] == [4, 4, 3]
    # what gather_rows does with the gathered, padded parts: row j of rank r is element j * size + r
    padded = torch.stack([torch.as_tensor(np.pad(p, (0, 4 - len(p)))) for p in parts], 1)
    assert padded.reshape(-1)[:11].tolist() == values.tolist()
    assert not Group().active and Group().gather_rows(torch.ones(2), 2).tolist() == [1.0, 1.0]
