"""Tiny random decoders (Llama, Qwen2, GPT-2 families) with tokenizers built offline.

For tests, examples and smoke runs of the whole pipeline without any model
download: the models are random, so they know no words, but every mechanism
(prefixes, caches, padding, training) runs exactly as with a real LLM.

Examples
--------
>>> from rarec.testing import tiny_llm
>>> model, tokenizer = tiny_llm(family="qwen2")
>>> model.config.num_hidden_layers
2
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from .llm import DEFAULT_ITEM_TEMPLATE, DEFAULT_USER_TEMPLATE, NO_TEXT

FAMILIES = ("llama", "qwen2", "gpt2")


def word_tokenizer(texts) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary is the words of ``texts`` (and the default prompts)."""
    words = {"<pad>": 0, "<unk>": 1, "<s>": 2}
    splitter = pre_tokenizers.Whitespace()
    corpus = list(texts) + [DEFAULT_USER_TEMPLATE, DEFAULT_ITEM_TEMPLATE, NO_TEXT, "; ( ) ,"]
    for text in corpus:
        for word, _ in splitter.pre_tokenize_str(text):
            words.setdefault(word, len(words))
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="<unk>"))
    tok.pre_tokenizer = splitter
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>")


class LLMPair(NamedTuple):
    """A ``(model, tokenizer)`` pair with a short repr (estimator reprs and test ids stay readable)."""

    model: Any
    tokenizer: Any

    def __repr__(self) -> str:
        config = self.model.config
        return f"LLMPair({type(self.model).__name__}, {config.num_hidden_layers} layers, hidden {config.hidden_size})"


def tiny_llm(item_text=None, family: str = "llama", seed: int = 0, hidden: int = 32, layers: int = 2) -> LLMPair:
    """``(model, tokenizer)`` of a small random decoder whose vocabulary covers ``item_text``'s titles.

    Parameters
    ----------
    item_text : ItemTextTable, optional
        Titles whose words the word-level tokenizer should know.
    family : {"llama", "qwen2", "gpt2"}
    seed : int
        Seed of the random weights (the global RNG state is restored afterwards).
    hidden, layers : int
        Width and depth.
    """
    texts = [] if item_text is None else [t.render() for _, t in item_text.items()]
    tokenizer = word_tokenizer(texts)
    vocab = len(tokenizer)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LLMPair(_build(family, vocab, hidden, layers).eval(), tokenizer)


def _build(family: str, vocab: int, hidden: int, layers: int):
    if family == "llama":
        config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                             pad_token_id=0, bos_token_id=2, eos_token_id=2)
        return LlamaForCausalLM(config)
    if family == "qwen2":
        config = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                             pad_token_id=0, bos_token_id=2, eos_token_id=2)
        return Qwen2ForCausalLM(config)
    if family == "gpt2":
        config = GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=4, n_positions=256,
                            bos_token_id=2, eos_token_id=2, pad_token_id=0)
        return GPT2LMHeadModel(config)
    raise ValueError(f"family must be one of {FAMILIES}; got {family!r}.")
