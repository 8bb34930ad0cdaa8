"""Tiny random decoders (Llama, Qwen2, GPT-2 families) with tokenizers built offline."""

from __future__ import annotations

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

from rarec.llm._prompts import DEFAULT_ITEM_TEMPLATE, DEFAULT_USER_TEMPLATE, NO_TEXT

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


def tiny_llm(item_text=None, family: str = "llama", seed: int = 0, hidden: int = 32, layers: int = 2):
    """``(model, tokenizer)`` of a 2-layer random decoder; the vocabulary covers ``item_text``'s titles."""
    texts = [] if item_text is None else [t.render() for _, t in item_text.items()]
    tokenizer = word_tokenizer(texts)
    vocab = len(tokenizer)
    torch.manual_seed(seed)
    if family == "llama":
        config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                             pad_token_id=0, bos_token_id=2, eos_token_id=2)
        model = LlamaForCausalLM(config)
    elif family == "qwen2":
        config = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                             pad_token_id=0, bos_token_id=2, eos_token_id=2)
        model = Qwen2ForCausalLM(config)
    elif family == "gpt2":
        config = GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=4, n_positions=256,
                            bos_token_id=2, eos_token_id=2, pad_token_id=0)
        model = GPT2LMHeadModel(config)
    else:
        raise ValueError(family)
    return model.eval(), tokenizer
