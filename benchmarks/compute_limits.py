"""How close rarec runs to the machine's limit, where the time goes, and what fine-tuning the LLM would cost.

    python benchmarks/compute_limits.py --data ../shared/data/ml-100k
    python benchmarks/compute_limits.py --render        # docs section from saved JSON

Measures, with the default LLM (SmolLM2-135M-Instruct) and ML-100K prompts:

- the machine's matrix-multiply peak: ``torch.matmul`` on large square fp32
  matrices (the best of a few sizes);
- the FLOPs (counted by ``torch.utils.flop_counter``) and achieved FLOP/s of
  the item tower and the user tower (no gradients, 256 prompts per batch, as
  rarec encodes) and of one alignment training step (batch 16, prefixes in
  the top 8 layers, lower-layer states cached: the default), each as a
  share of the peak;
- the same training step done as a LoRA-style step (forward and backward
  through every layer, activation gradients only: the least any adapter
  inside the LLM costs) and as a full fine-tune (every weight gets a
  gradient), as multiples of the alignment step's time;
- a profile of the item tower: the operators that take the most time.

The towers and the step use a randomly initialised alignment module: FLOPs and
time do not depend on trained values.
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
from torch.utils.flop_counter import FlopCounterMode

from common import write_section

from rarec.align import PrefixConfig, PrefixProjector
from rarec.align import TwoTowerAligner
from rarec.data import read_recbole
from rarec.llm import FrozenLLM
from rarec.llm import DEFAULT_ITEM_TEMPLATE, DEFAULT_USER_TEMPLATE, PromptBuilder

HERE = Path(__file__).resolve().parent


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn, device: torch.device, repeats: int = 3) -> float:
    """Best of ``repeats`` timed calls after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        synchronise(device)
        start = time.perf_counter()
        fn()
        synchronise(device)
        best = min(best, time.perf_counter() - start)
    return best


def flops_of(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32) -> dict:
    """Best FLOP/s of ``a @ b`` over square sizes (fp32: TF32 off, so the figure is true fp32)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    best = {"flops_per_s": 0.0}
    for n in (1024, 2048, 4096):
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        seconds = seconds_per_call(lambda: a @ b, device, repeats=5)
        rate = 2 * n**3 / seconds
        if rate > best["flops_per_s"]:
            best = {"flops_per_s": rate, "n": n}
    return best


class Workload:
    """The default LLM, a random alignment module (top 8 layers) and real ML-100K prompts."""

    def __init__(self, data: Path, llm: str | None, device: str, batch: int = 256, train_batch: int = 16):
        log, text = read_recbole(data).k_core(5)
        self.llm = FrozenLLM.load(llm, device=device, dtype=torch.float32, verbose=False)
        self.device = self.llm.device
        prompts = PromptBuilder(self.llm.tokenizer, text.align(log.items), DEFAULT_USER_TEMPLATE,
                                DEFAULT_ITEM_TEMPLATE, 5, 64)
        rng = np.random.default_rng(0)
        sequences = log.user_sequences()
        self.item_tokens = [prompts.item_tokens(int(i)) for i in rng.choice(log.n_items, batch, replace=False)]
        self.user_tokens = [prompts.user_tokens(sequences[int(u)][-50:])
                            for u in rng.choice(log.n_users, batch, replace=False)]
        spec = self.llm.spec
        top = type(spec)(**{**spec.__dict__, "n_layers": min(8, spec.n_layers)})
        self.aligner = TwoTowerAligner(*(PrefixProjector(top, PrefixConfig(id_dim=64, n_interests=1, n_ctx=4))
                                         for _ in range(2))).to(self.device)
        self.start = self.aligner.start(self.llm)
        self.cf = torch.randn(batch, 1, 64, device=self.device)
        self.train_batch = train_batch
        n_prefix = self.aligner.user_prefix.config.length
        b = train_batch
        self.user_states = self.llm.lower_states(self.user_tokens[:b], self.start, n_prefix)
        self.item_states = self.llm.lower_states(self.item_tokens[:b], self.start, n_prefix)

    def tokens_in(self, tokens) -> int:
        return sum(len(t) for t in tokens)

    @torch.no_grad()
    def item_tower(self):
        return self.aligner.encode(self.llm, "item", self.cf, self.item_tokens)

    @torch.no_grad()
    def user_tower(self):
        return self.aligner.encode(self.llm, "user", self.cf, self.user_tokens)

    def alignment_step(self):
        """One default training step: prefixes in the top 8 layers over cached lower states."""
        b = self.train_batch
        h_u = self.aligner.encode(self.llm, "user", self.cf[:b], self.user_tokens[:b], self.user_states)
        h_i = self.aligner.encode(self.llm, "item", self.cf[:b], self.item_tokens[:b], self.item_states)
        self._backward(h_u, h_i)
        self.aligner.zero_grad(set_to_none=True)

    def llm_step(self, weight_gradients: bool):
        """The same batch through every layer, forward and backward: LoRA-style (False) or full fine-tune (True)."""
        b, model = self.train_batch, self.llm.model
        for p in model.parameters():
            p.requires_grad_(weight_gradients)
        try:
            h_u, h_i = (self._through_all_layers(tokens[:b]) for tokens in (self.user_tokens, self.item_tokens))
            self._backward(h_u, h_i)
        finally:
            for p in model.parameters():
                p.requires_grad_(False)
                p.grad = None

    def _through_all_layers(self, tokens):
        ids, real = self.llm._pad(tokens)
        embeddings = self.llm.model.get_input_embeddings()(ids).detach().requires_grad_(True)
        out = self.llm.model(inputs_embeds=embeddings, attention_mask=real.long())
        return out.last_hidden_state[:, -1]

    def _backward(self, h_u, h_i):
        scores = h_u.float() @ h_i.float().T * self.llm.spec.hidden_size ** -0.5
        torch.nn.functional.cross_entropy(scores, torch.arange(len(scores), device=scores.device)).backward()


def profile_top_ops(fn, device: torch.device, top: int = 8) -> list[dict]:
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        fn()
        synchronise(device)
    events = prof.key_averages()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    total = sum(getattr(e, key) for e in events) or 1.0
    ranked = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:top]
    return [{"op": e.key, "share": getattr(e, key) / total, "calls": e.count} for e in ranked]


def measure(args) -> dict:
    device = torch.device(args.device)
    peak = matmul_peak(device)
    print(f"matmul peak: {peak['flops_per_s'] / 1e9:.1f} GFLOP/s (n={peak['n']})", file=sys.stderr)
    work = Workload(args.data, None if args.llm is None else str(args.llm), args.device)
    result = {"device": describe(device), "torch": torch.__version__, "peak": peak, "parts": {}}
    parts = [
        ("item tower (256 prompts, no grad)", work.item_tower, work.tokens_in(work.item_tokens)),
        ("user tower (256 prompts, no grad)", work.user_tower, work.tokens_in(work.user_tokens)),
        ("alignment training step (batch 16, top 8 layers, cached)", work.alignment_step, None),
        ("LoRA-style step (all layers, activation gradients)", lambda: work.llm_step(False), None),
        ("full fine-tune step (all layers, every weight's gradient)", lambda: work.llm_step(True), None),
    ]
    for label, fn, tokens in parts:
        seconds = seconds_per_call(fn, work.device)
        flops = flops_of(fn)
        result["parts"][label] = {"seconds": seconds, "flops": flops, "flops_per_s": flops / seconds,
                                  "share_of_peak": flops / seconds / peak["flops_per_s"], "tokens": tokens}
        print(f"{label}: {seconds:.3f} s, {flops / 1e9:.1f} GFLOP, {flops / seconds / 1e9:.1f} GFLOP/s "
              f"({flops / seconds / peak['flops_per_s']:.0%} of peak)", file=sys.stderr)
    result["profile_item_tower"] = profile_top_ops(work.item_tower, work.device)
    return result


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} CPU, {torch.get_num_threads()} threads"


def to_markdown(results: dict[str, dict]) -> str:
    lines = ["## Compute limits: achieved FLOP/s, where the time goes, and the cost of fine-tuning instead", "",
             "Reproduce: `python benchmarks/compute_limits.py --data ../shared/data/ml-100k` (add `--device cuda` "
             "on a GPU), then `python benchmarks/compute_limits.py --render`. SmolLM2-135M-Instruct in fp32; FLOPs "
             "counted by `torch.utils.flop_counter` (matrix products and attention); the peak is the best "
             "`torch.matmul` rate on square fp32 matrices on the same machine in the same run.", ""]
    for tag, r in results.items():
        parts = r["parts"]
        step = parts["alignment training step (batch 16, top 8 layers, cached)"]["seconds"]
        lines += [f"### {r['device']} (torch {r['torch']}; matmul peak {r['peak']['flops_per_s'] / 1e9:,.0f} "
                  f"GFLOP/s at n={r['peak']['n']})", "",
                  "| work | seconds | GFLOP | GFLOP/s | share of peak | vs the alignment step |",
                  "|---|---|---|---|---|---|"]
        for label, p in parts.items():
            ratio = f"{p['seconds'] / step:.1f}×" if "step" in label else "—"
            lines.append(f"| {label} | {p['seconds']:.3f} | {p['flops'] / 1e9:,.1f} | {p['flops_per_s'] / 1e9:,.1f} "
                         f"| {p['share_of_peak']:.0%} | {ratio} |")
        lines += ["", f"Where the item tower's time goes ({tag}; share of self time, top operators):", "",
                  "| operator | share | calls |", "|---|---|---|"]
        lines += [f"| `{op['op']}` | {op['share']:.0%} | {op['calls']} |" for op in r["profile_item_tower"]]
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/ml-100k")
    parser.add_argument("--llm", type=Path, default=None, help="LLM folder or .gguf (default: SmolLM2-135M)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tag", default=None, help="result file name part (default: cpu or gpu)")
    parser.add_argument("--output", type=Path, default=HERE.parent / "docs/benchmarks.md")
    parser.add_argument("--render", action="store_true", help="only rewrite the docs section from saved JSON")
    args = parser.parse_args()
    if not args.render:
        tag = args.tag or ("gpu" if args.device.startswith("cuda") else "cpu")
        path = HERE / "results" / f"compute_limits_{tag}.json"
        path.write_text(json.dumps(measure(args), indent=1) + "\n")
    results = {p.stem.removeprefix("compute_limits_"): json.loads(p.read_text())
               for p in sorted((HERE / "results").glob("compute_limits_*.json"))}
    write_section(args.output, to_markdown(results), marker="compute-limits")
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
