"""Hard prompts of the two towers: templates, item titles and a token budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..data import ItemText

DEFAULT_USER_TEMPLATE = "A user recently liked: {history}. Recommend the next item for this user."
DEFAULT_ITEM_TEMPLATE = "Item: {item}"
#: Stands in for an item without text.
NO_TEXT = "an item without a description"


def check_template(template: str, placeholder: str, name: str) -> None:
    """Raise a ``ValueError`` unless ``template`` holds ``{placeholder}`` exactly once and nothing else."""
    if not isinstance(template, str):
        raise ValueError(f"The '{name}' parameter must be a str. Got {type(template).__name__} instead.")
    if template.count("{" + placeholder + "}") != 1:
        raise ValueError(f"The '{name}' parameter must contain the placeholder {{{placeholder}}} once. Got {template!r}.")
    try:
        template.format(**{placeholder: ""})
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"The '{name}' parameter has a placeholder other than {{{placeholder}}}: {exc}.") from None


class PromptBuilder:
    """Token ids of the user and item prompts.

    Parameters
    ----------
    tokenizer : transformers tokenizer
    texts : list of ItemText or None
        Item texts in item-index order (``None``: no text; :data:`NO_TEXT` is used).
    user_template, item_template : str
        With ``{history}`` and ``{item}`` placeholders.
    n_history_titles : int
        Most recent history titles spelled out in the user prompt.
    max_prompt_tokens : int
        Token budget of one prompt: the user prompt drops its oldest titles until it
        fits; an item prompt (or a prompt still too long) is cut to the budget.
    """

    def __init__(self, tokenizer: Any, texts: Sequence[ItemText | None], user_template: str, item_template: str,
                 n_history_titles: int, max_prompt_tokens: int) -> None:
        check_template(user_template, "history", "user_template")
        check_template(item_template, "item", "item_template")
        self.tokenizer = tokenizer
        self.titles: list[str] = []
        self.rendered: list[str] = []
        self.extend(texts)
        self.user_template, self.item_template = user_template, item_template
        self.n_history_titles, self.max_prompt_tokens = n_history_titles, max_prompt_tokens

    def extend(self, texts: Sequence[ItemText | None]) -> None:
        """Append the texts of items added to the catalogue (their indices follow the known items')."""
        self.titles += [NO_TEXT if t is None else t.title for t in texts]
        self.rendered += [NO_TEXT if t is None else t.render() for t in texts]

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def item_tokens(self, item: int) -> list[int]:
        """Tokens of one item's prompt (title and categories), cut to the budget."""
        return self._encode(self.item_template.format(item=self.rendered[item]))[: self.max_prompt_tokens]

    def user_tokens(self, history: Sequence[int]) -> list[int]:
        """Tokens of a user prompt with the most recent titles that fit the budget (at least one)."""
        recent = [self.titles[i] for i in list(history)[-self.n_history_titles:]]
        tokens: list[int] = []
        for start in range(len(recent)):  # drop the oldest titles first
            tokens = self._encode(self.user_template.format(history="; ".join(recent[start:])))
            if len(tokens) <= self.max_prompt_tokens:
                return tokens
        return tokens[-self.max_prompt_tokens:]  # keep the end: the most recent title and the instruction
