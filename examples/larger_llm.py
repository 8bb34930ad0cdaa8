"""A larger LLM from the Hugging Face hub (or any local model folder, or a .gguf file).

    python examples/larger_llm.py --llm HuggingFaceTB/SmolLM2-360M-Instruct
    python examples/larger_llm.py --llm Qwen/Qwen2.5-0.5B-Instruct --device cuda
    python examples/larger_llm.py --llm ./my-model-folder

The hub id is downloaded once by transformers (network needed, then cached);
a folder or a .gguf file works offline. The alignment module grows with the
LLM's depth and key/value width, never with its parameter count; the
frozen weights only cost memory and forward time. On CUDA the LLM runs in
bf16 (about 2 bytes per parameter), on CPU in fp32 (4 bytes).
"""

import argparse

from rarec import RARecommender
from rarec.data import make_interactions
from rarec.model_selection import leave_last_out

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--llm", default="HuggingFaceTB/SmolLM2-360M-Instruct", help="hub id, model folder or .gguf")
parser.add_argument("--device", default="auto")
parser.add_argument("--samples", type=int, default=256, help="alignment training samples")
args = parser.parse_args()

log, titles = make_interactions(n_users=150, n_items=60, random_state=0)
split = leave_last_out(log, n_valid=0)
rec = RARecommender(
    backbone_params={"dim": 32, "n_layers": 1, "inner_dim": 64, "max_len": 25},
    cf_epochs=40, llm=args.llm, device=args.device, epochs=3, max_train_samples=args.samples, random_state=0, verbose=1,
)
rec.fit(split.train.to_array(), item_text=titles)
spec = rec.llm_.spec
print(f"LLM: {rec.n_llm_parameters_:,} parameters, {spec.n_layers} layers, hidden {spec.hidden_size}, "
      f"{spec.n_kv_heads} KV heads x {spec.head_dim} on {rec.llm_.device} ({rec.llm_.dtype})")
print(f"alignment module: {rec.n_trainable_parameters_:,} trainable parameters "
      f"({rec.n_trainable_parameters_ / rec.n_llm_parameters_:.2%} of the LLM)")
print(f"test NDCG@10: {rec.score(split.test.to_array()):.3f}")
