"""Speed of the alignment stage on one device, for the default LLM's architecture (SmolLM2-135M).

Times, for each dtype: alignment training (seconds per 1,000 samples) with prefixes in all
layers and in the top 8 (cached lower layers), items/s through the item tower, users/s of
full-catalogue ranking from cached vectors, peak GPU memory; then one whole fit with the
default settings (CF + alignment + encoding). The data is synthetic and sized like
MovieLens-100K (943 users, 1,682 items), so the script runs where the real data is not.

    python benchmarks/device_speed.py --json out.json                # the installed default LLM
    python benchmarks/device_speed.py --random-weights DIR --json out.json
    python benchmarks/device_speed.py --render benchmarks/results/device_speed_*.json

``--random-weights DIR`` builds the model from ``DIR/config.json`` (and DIR's tokenizer) with
random weights: the same shapes and arithmetic, so the same speed, but no meaningful quality.
That is how a GPU machine without the default model's weights is measured; the JSON records it.
``--render`` writes the table into docs/benchmarks.md from saved JSON files.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import write_section

from rarec import RARecommender
from rarec._device import resolve_device
from rarec.data import make_interactions
from rarec.model_selection import leave_last_out

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
DOCS = Path(__file__).resolve().parents[1] / "docs/benchmarks.md"


def load_llm(random_weights: Path | None, dtype: torch.dtype):
    """``(model, tokenizer)`` of the default LLM, or of its architecture with random weights."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    if random_weights is None:
        from rarec.llm import FrozenLLM

        llm = FrozenLLM.load(None, device="cpu", dtype=dtype, verbose=False)
        return llm.model, llm.tokenizer
    config = AutoConfig.from_pretrained(random_weights)
    torch.manual_seed(0)
    model = AutoModel.from_config(config).to(dtype).eval()
    return model, AutoTokenizer.from_pretrained(random_weights)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(split, text, llm, device, samples: int) -> dict:
    # warm-up: the first fit on a device pays for kernel selection and allocator growth
    RARecommender(llm=llm, device=str(device), prefix_layers=8, max_train_samples=32, epochs=1, cf_epochs=1,
                  batch_size=16, random_state=0, verbose=0).fit(split.train, item_text=text)
    row = {}
    for layers in ("all", 8):
        rec = RARecommender(llm=llm, device=str(device), prefix_layers=layers, max_train_samples=samples, epochs=1,
                            cf_epochs=5, batch_size=16, random_state=0, verbose=0)
        start = time.perf_counter()
        rec.fit(split.train, item_text=text)
        epoch = rec.training_log_[0]
        row[f"train_s_per_1k[{layers}]"] = 1000 * epoch["seconds"] / epoch["samples"]
        row[f"setup_s[{layers}]"] = epoch.get("setup_seconds", 0.0)
        row[f"fit_s[{layers}]"] = time.perf_counter() - start
    items = np.arange(rec.n_items_)
    towers = rec.towers_
    tokens = [towers.item_tokens[i] for i in items]
    for batch in (32, 256):
        towers.encode("item", towers.item_cf, tokens[:batch], batch=batch)  # warm-up
        sync(device)
        start = time.perf_counter()
        towers.encode("item", towers.item_cf, tokens, batch=batch)
        sync(device)
        row[f"item_tower_items_per_s[batch {batch}]"] = len(items) / (time.perf_counter() - start)
    users = np.arange(rec.n_users_)
    start = time.perf_counter()
    for _ in range(5):
        torch.topk(rec.ranker_.scores(rec.user_vectors_[users]), 10, dim=1)
    row["ranking_users_per_s"] = 5 * len(users) / (time.perf_counter() - start)
    return row


def default_fit(split, text, llm, device) -> dict:
    rec = RARecommender(llm=llm, device=str(device), random_state=0, verbose=0)
    start = time.perf_counter()
    rec.fit(split.train, item_text=text)
    fit_s = time.perf_counter() - start
    log = rec.training_log_
    return {"fit_s": fit_s, "alignment_s": sum(r["seconds"] for r in log), "setup_s": log[0].get("setup_seconds", 0.0),
            "epochs": len(log), "samples_per_epoch": log[0]["samples"],
            "prefix_layers": rec.prefix_layers, "sample_fraction": rec.sample_fraction}


def run(args) -> dict:
    device = resolve_device(args.device)
    log, text = make_interactions(n_users=943, n_items=1682, n_categories=10, min_length=20, max_length=150,
                                  random_state=0)
    split = leave_last_out(log, n_valid=0)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or
              platform.machine(), "device_type": device.type, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "weights": "random" if args.random_weights else "default model",
              "interactions": len(log), "rows": {}}
    for name in args.dtypes.split(","):
        llm = load_llm(args.random_weights, DTYPES[name])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        row = measure(split, text, llm, device, args.samples)
        if name == args.dtypes.split(",")[0] and not args.skip_default_fit:
            row["default_fit"] = default_fit(split, text, llm, device)
        if device.type == "cuda":
            row["peak_gpu_gib"] = torch.cuda.max_memory_allocated(device) / 1024**3
        row["wall_s"] = time.perf_counter() - start
        result["rows"][name] = row
        print(json.dumps({name: row}), file=sys.stderr, flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


def render(paths: list[Path]) -> str:
    lines = ["## Alignment speed by device", "",
             "Reproduce: `python benchmarks/device_speed.py --json FILE` then "
             "`python benchmarks/device_speed.py --render FILE...`. Synthetic data sized like ML-100K "
             "(943 users, 1,682 items); SmolLM2-135M's architecture; batch 16, 1 epoch of 512 samples per row. "
             "\"random\" weights have the default model's shapes and arithmetic (so its speed) but not its weights. "
             "Ranking runs on the CPU in every row (the cached vectors live there), so that column compares the "
             "machines' CPUs (2 cores here, 16 on the GPU machine). GPU timings of this small model are bound by "
             "kernel launches and varied by up to 2x between two machines of the same kind "
             "(docs/gpu.md).", "",
             "| device | weights | dtype | train s/1k, all layers | train s/1k, top 8 cached | item tower items/s, "
             "batch 32 | batch 256 | ranking users/s | peak GPU GiB |", "|---|---|---|---|---|---|---|---|---|"]
    fits = []
    for path in paths:
        result = json.loads(Path(path).read_text())
        for dtype, row in result["rows"].items():
            peak = f"{row['peak_gpu_gib']:.2f}" if "peak_gpu_gib" in row else "—"
            lines.append(f"| {result['device']} (torch {result['torch']}) | {result['weights']} | {dtype} | "
                         f"{row['train_s_per_1k[all]']:.1f} | {row['train_s_per_1k[8]']:.1f} | "
                         f"{row['item_tower_items_per_s[batch 32]']:,.0f} | {row['item_tower_items_per_s[batch 256]']:,.0f} | "
                         f"{row['ranking_users_per_s']:,.0f} | {peak} |")
            if "default_fit" in row:
                fits.append((result, dtype, row["default_fit"]))
    if fits:
        lines += ["", "Whole fit with the default settings of the code that ran it (CF + alignment + encoding of every "
                  "user and item); the prefix_layers and samples columns say which defaults those were:", "",
                  "| device | dtype | prefix_layers | samples/epoch | fit s | alignment s | setup s | epochs |",
                  "|---|---|---|---|---|---|---|---|"]
        for result, dtype, fit in fits:
            lines.append(f"| {result['device']} | {dtype} | {fit['prefix_layers']} | {fit['samples_per_epoch']:,} | "
                         f"{fit['fit_s']:.0f} | {fit['alignment_s']:.0f} | {fit['setup_s']:.0f} | {fit['epochs']} |")
    return "\n".join(lines) + "\n\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtypes", default=None, help="comma-separated: bf16,fp32 (default: bf16,fp32 on CUDA, fp32 "
                        "elsewhere)")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--random-weights", type=Path, default=None, metavar="DIR")
    parser.add_argument("--skip-default-fit", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--render", type=Path, nargs="+", default=None, metavar="JSON")
    args = parser.parse_args()
    if args.render:
        write_section(DOCS, render(args.render), marker="device-speed")
        print(f"wrote {DOCS}", file=sys.stderr)
        return
    if args.dtypes is None:
        args.dtypes = "bf16,fp32" if resolve_device(args.device).type == "cuda" else "fp32"
    run(args)


if __name__ == "__main__":
    main()
