"""Stage 3 of RA-Rec: the frozen LLM that encodes users and items."""

from ._frozen import POOLINGS, FrozenLLM, LLMSpec, config_fingerprint
from ._loading import DEFAULT_HUB_ID, LLMLoadError, cache_dir, check_llm_source, convert_gguf, default_gguf_path
from ._prompts import DEFAULT_ITEM_TEMPLATE, DEFAULT_USER_TEMPLATE, NO_TEXT, PromptBuilder, check_template

__all__ = [
    "DEFAULT_HUB_ID",
    "DEFAULT_ITEM_TEMPLATE",
    "DEFAULT_USER_TEMPLATE",
    "NO_TEXT",
    "POOLINGS",
    "PromptBuilder",
    "check_template",
    "FrozenLLM",
    "LLMLoadError",
    "LLMSpec",
    "cache_dir",
    "check_llm_source",
    "config_fingerprint",
    "convert_gguf",
    "default_gguf_path",
]
