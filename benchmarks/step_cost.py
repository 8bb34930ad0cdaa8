"""What an alignment step costs with the random extra negatives encoded live or forward-only, or with the
frozen LLM held in fp32 or bf16.

    python benchmarks/step_cost.py                       # ML-100K, 40 steps each way
    python benchmarks/step_cost.py --data ../shared/data/amazon-beauty --steps 20
    python benchmarks/step_cost.py --compare dtype       # llm_dtype float32 against bfloat16 (live negatives)
    python benchmarks/step_cost.py --compare short --data ../shared/data/amazon-beauty   # 64 against 16 tokens

The estimator's default objective adds 64 uniformly drawn items to every
batch's candidates. Encoded *live* (the default), they run through the item
tower with gradients; *forward-only* (``random_negative_gradients=False``, an
estimator parameter since session 56) they move the users' vectors but not
the item tower, and the backward pass skips them. The objective study
measures what that does to quality; this script measures the time, both ways in one
process on the same samples (the fit's first ``--steps`` batches of 16),
alternating the two so that a machine that slows down or speeds up mid-run
does not favour either. ``--compare dtype`` times the default (live) step
with the LLM in fp32 and in bf16 instead: on a CPU without bf16 units bf16 is
far slower, on one with them (AMX) the frozen layers' matrix products run
faster. ``--compare short`` times the default step (64-token prompts, live
negatives) against 16-token prompts with forward-only negatives, the two
savings of the objective study's "..., 16-token prompts, forward-only random
negatives" row (``--llm-dtype`` picks the precision of both). Each fit uses the objective study's shared SASRec and prompt-pass
cache; a tiny validation set keeps the fit's validation
short, the fits align on 100 seeded users (a fit ends by encoding each
user it was given), and only the training epoch's own seconds are compared.

Results: benchmarks/results/step_cost_<data folder>.json, or
step_cost_dtype_<data folder>.json for ``--compare dtype``, with ``_<tag>``
appended when ``--tag`` names the machine (printed; the page quotes them), written after
every fit so that a run stopped early keeps the fits it finished (``rounds_done``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

from common import cached_prompt_states, dataset_suffix, read_dataset, results_json
from objective_study import BASE, HERE, PROMPT_CACHE, VARIANTS, shared_sasrec

from rarec import RARecommender
from rarec.model_selection import leave_last_out

DEFAULT = "default + co-occurrence factors (session 23)"
FIT_USERS, VALIDATION_USERS = 100, 20
BATCH = 16


def timed_epoch(backbone, train, validation, text, live: bool, steps: int, llm=None,
                prompt_cache: Path | None = PROMPT_CACHE, llm_dtype: str = "float32", max_prompt_tokens: int = 64) -> dict:
    """One fit of ``steps`` batches with the default objective; the training epoch's seconds per step."""
    params = {**BASE, **VARIANTS[DEFAULT], "sample_fraction": 1.0, "max_train_samples": steps * BATCH,
              "head_epochs": 0,  # every sample a candidate, so that the few users give ``steps`` batches
              "max_prompt_tokens": max_prompt_tokens, "random_negative_gradients": live}
    rec = RARecommender(backbone=backbone, llm=llm, device="cpu", llm_dtype=llm_dtype, random_state=0, verbose=0,
                        **params)
    with cached_prompt_states(prompt_cache):
        rec.fit(train, item_text=text, validation=validation)
    epoch = rec.training_log_[0]
    batches = -(-epoch["samples"] // BATCH)
    return {"live": live, "llm_dtype": llm_dtype, "max_prompt_tokens": max_prompt_tokens, "seconds": epoch["seconds"], "steps": batches,
            "seconds_per_step": epoch["seconds"] / batches, "setup_seconds": epoch.get("setup_seconds")}


def cpu_model() -> str | None:
    """The CPU's model name as Linux reports it (``None`` elsewhere): machines differ by several times."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/ml-100k")
    parser.add_argument("--steps", type=int, default=40, help="training steps (batches of 16) timed per fit")
    parser.add_argument("--rounds", type=int, default=2, help="fits each way, alternating")
    parser.add_argument("--compare", choices=("negatives", "dtype", "short"), default="negatives",
                        help="negatives: live against forward-only random negatives (fp32); dtype: the LLM in "
                             "float32 against bfloat16 (live negatives); short: 64-token prompts with live "
                             "negatives against 16-token prompts with forward-only ones")
    parser.add_argument("--llm-dtype", default="float32", help="the LLM's precision for --compare negatives/short")
    parser.add_argument("--tag", default="", help="appended to the results file's name (one file per machine)")
    args = parser.parse_args()
    suffix = dataset_suffix(args.data)
    log, text = read_dataset(args.data)
    split = leave_last_out(log, n_valid=0)
    backbone = shared_sasrec(split.train, HERE / "output" / f"objective_study_sasrec{suffix}")
    inner = leave_last_out(split.train, n_valid=0)  # the fit's own split: validation = each user's last item
    # a fit ends by encoding every user it was given: a seeded few keep that short (the steps do not depend on it)
    users = np.random.default_rng(0).choice(np.unique(inner.test.user_codes), FIT_USERS, replace=False)
    train = inner.train.subset(np.isin(inner.train.user_codes, users))
    validation = inner.test.subset(np.isin(inner.test.user_codes, users[:VALIDATION_USERS]))
    # the two settings compared: (key in the results, timed_epoch's keyword arguments)
    if args.compare == "negatives":
        ways = [("live", dict(live=True, llm_dtype=args.llm_dtype)),
                ("forward_only", dict(live=False, llm_dtype=args.llm_dtype))]
    elif args.compare == "short":
        ways = [("default", dict(live=True, llm_dtype=args.llm_dtype)),
                ("short", dict(live=False, llm_dtype=args.llm_dtype, max_prompt_tokens=16))]
    else:
        ways = [("float32", dict(live=True, llm_dtype="float32")), ("bfloat16", dict(live=True, llm_dtype="bfloat16"))]
    name = {"negatives": "step_cost", "dtype": "step_cost_dtype", "short": "step_cost_short"}[args.compare]
    path = HERE / "results" / f"{name}{suffix}{'_' + args.tag if args.tag else ''}.json"
    runs: list[dict] = []
    for round_ in range(args.rounds):
        for key, kwargs in (ways if round_ % 2 == 0 else ways[::-1]):
            runs.append({"way": key, **timed_epoch(backbone, train, validation, text, steps=args.steps, **kwargs)})
            print(json.dumps(runs[-1]), file=sys.stderr)
            # written after every fit, so that a run stopped early keeps what it measured ("rounds_done" says how much)
            result = summary(args, ways, runs)
            path.write_text(results_json(result))
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}), file=sys.stderr)


def summary(args: argparse.Namespace, ways: list[tuple[str, dict]], runs: list[dict]) -> dict:
    """The results file's content for the fits timed so far: each way's mean seconds per step and their ratio."""
    per_step = {key: statistics.mean(r["seconds_per_step"] for r in runs if r["way"] == key)
                for key, _ in ways if any(r["way"] == key for r in runs)}
    (first, _), (second, _) = ways
    ratio = {f"{second}_over_{first}": per_step[second] / per_step[first]} if len(per_step) == 2 else {}
    return {"dataset": args.data.name, "steps": args.steps, "rounds": args.rounds,
            "rounds_done": min(sum(r["way"] == key for r in runs) for key, _ in ways),
            "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
            "cpu_model": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            **{f"seconds_per_step_{key}": value for key, value in per_step.items()}, **ratio, "runs": runs}


if __name__ == "__main__":
    main()
