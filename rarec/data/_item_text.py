"""Item text: a title plus optional categories, per raw item id."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._errors import DataFormatError
from ._ids import IdIndex, normalize_ids


@dataclass(frozen=True)
class ItemText:
    """The text of one item.

    Attributes
    ----------
    title : str
        The item's name, e.g. a movie title.
    categories : tuple of str
        Genres, categories or other short attributes, most general first.
    """

    title: str
    categories: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "title", _clean(self.title))
        object.__setattr__(self, "categories", tuple(c for c in (_clean(c) for c in self.categories) if c))

    def render(self) -> str:
        """``"Toy Story (Animation, Comedy)"``: title with its categories."""
        if not self.categories:
            return self.title
        return f"{self.title} ({', '.join(self.categories)})"

    @classmethod
    def coerce(cls, value: Any, item_id: Any = None) -> ItemText | None:
        """An ItemText from a str, an ItemText, a mapping with ``title`` (and ``categories``) or a
        ``(title, categories)`` pair; ``None`` for a missing or empty title."""
        return _to_item_text(value, item_id)


def _clean(text: Any) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return " ".join(str(text).split())


def _to_item_text(value: Any, item_id: Any) -> ItemText | None:
    if value is None:
        return None
    if isinstance(value, ItemText):
        text = value
    elif isinstance(value, str | bytes):
        text = ItemText(value)
    elif isinstance(value, Mapping):
        if "title" not in value:
            raise DataFormatError(f"text of item {item_id!r} is a mapping without a 'title' key: {value!r}.")
        cats = value.get("categories") or ()
        text = ItemText(value["title"], (cats,) if isinstance(cats, str) else tuple(cats))
    elif isinstance(value, tuple | list) and len(value) == 2:
        cats = value[1] or ()
        text = ItemText(value[0], (cats,) if isinstance(cats, str) else tuple(cats))
    else:
        raise DataFormatError(
            f"text of item {item_id!r} must be a str, an ItemText, a mapping with 'title' "
            f"(and 'categories'), or a (title, categories) pair; got {type(value).__name__}."
        )
    return text if text.title else None


class ItemTextTable:
    """Texts of items, keyed by raw item id; items may lack text.

    Parameters
    ----------
    texts : mapping
        ``{item_id: text}`` where text is a ``str`` (title), an
        :class:`ItemText`, a mapping with ``title`` (and ``categories``) or a
        ``(title, categories)`` pair. Empty titles count as "no text".

    Examples
    --------
    >>> from rarec.data import ItemTextTable
    >>> table = ItemTextTable({1: "Toy Story", 2: ("GoldenEye", ["Action"])})
    >>> table[2].render()
    'GoldenEye (Action)'
    """

    def __init__(self, texts: Mapping[Any, Any]) -> None:
        keys = list(texts.keys())
        raw = normalize_ids(keys, "item ids in the item text")
        self._texts: dict[Any, ItemText] = {}
        for key, norm in zip(keys, raw.tolist()):
            text = _to_item_text(texts[key], key)
            if text is not None:
                self._texts[norm] = text

    @classmethod
    def from_any(cls, obj: Any) -> ItemTextTable:
        """Accept an :class:`ItemTextTable`, a mapping, (id, title[, categories]) rows or a DataFrame
        with ``item_id`` and ``title`` columns (``categories`` optional)."""
        if isinstance(obj, ItemTextTable):
            return obj
        if isinstance(obj, Mapping):
            return cls(obj)
        if hasattr(obj, "columns") and hasattr(obj, "iloc"):
            cols = {str(c).lower(): c for c in obj.columns}
            id_col = next((cols[c] for c in ("item_id", "item", "asin", "movieid", "iid") if c in cols), None)
            title_col = next((cols[c] for c in ("title", "movie_title", "name") if c in cols), None)
            if id_col is None or title_col is None:
                raise DataFormatError(
                    f"item text DataFrame needs an 'item_id' and a 'title' column; got {list(obj.columns)}."
                )
            cat_col = next((cols[c] for c in ("categories", "category", "genres", "class") if c in cols), None)
            ids = obj[id_col].to_numpy()
            titles = obj[title_col].to_numpy()
            cats = obj[cat_col].to_numpy() if cat_col is not None else [()] * len(ids)
            return cls({i: (t, c) for i, t, c in zip(ids.tolist(), titles.tolist(), list(cats))})
        if isinstance(obj, Iterable) and not isinstance(obj, str | bytes):
            rows: dict[Any, Any] = {}
            for n, row in enumerate(obj):
                if not isinstance(row, tuple | list) or len(row) not in (2, 3):
                    raise DataFormatError(
                        f"item text row {n + 1} must be (item_id, title) or (item_id, title, categories); got {row!r}."
                    )
                rows[row[0]] = (row[1], row[2] if len(row) == 3 else ())
            return cls(rows)
        raise DataFormatError(
            f"item_text must be a mapping {{item_id: title}}, rows (item_id, title[, categories]) or a "
            f"DataFrame; got {type(obj).__name__}."
        )

    def __len__(self) -> int:
        return len(self._texts)

    def __contains__(self, item_id: Any) -> bool:
        return item_id in self._texts

    def __getitem__(self, item_id: Any) -> ItemText:
        return self._texts[item_id]

    def __iter__(self):
        return iter(self._texts)

    def items(self):
        """``(item_id, ItemText)`` pairs."""
        return self._texts.items()

    def __repr__(self) -> str:
        return f"ItemTextTable(n_items={len(self)})"

    def align(self, items: IdIndex, on_unknown: str = "raise") -> list[ItemText | None]:
        """Texts in item-index order; ``None`` for items without text.

        Parameters
        ----------
        items : IdIndex
            The item id map of the interaction log.
        on_unknown : {"raise", "warn", "ignore"}
            What to do with texts of item ids the log does not know: raise a
            :class:`DataFormatError` naming them, drop them with a warning that
            counts them, or drop them silently.
        """
        if on_unknown not in ("raise", "warn", "ignore"):
            raise ValueError(f"on_unknown must be 'raise', 'warn' or 'ignore'; got {on_unknown!r}.")
        unknown = [k for k in self._texts if k not in items]
        if unknown and on_unknown == "raise":
            shown = ", ".join(repr(k) for k in unknown[:5])
            raise DataFormatError(
                f"item text names {len(unknown)} item id(s) that are not in the interactions "
                f"(first: {shown}). Check that both use the same id type (int vs str), or "
                f"drop the extra texts with ItemTextTable.restrict(log.items)."
            )
        if unknown and on_unknown == "warn":
            warnings.warn(f"ignored the text of {len(unknown)} item(s) absent from the interactions.", stacklevel=2)
        return [self._texts.get(raw) for raw in items.ids.tolist()]

    def restrict(self, items: IdIndex, report: str | None = None) -> ItemTextTable:
        """The texts of the items in ``items`` only.

        With ``report`` (a file name, say), warn with the number of texts dropped:
        a catalogue file that lists items without interactions is normal, but
        nothing is dropped without a count.
        """
        kept = ItemTextTable({k: v for k, v in self._texts.items() if k in items})
        if report is not None and len(kept) < len(self):
            warnings.warn(
                f"{report}: {len(self) - len(kept)} of {len(self)} item texts describe items without "
                "interactions and were not kept.",
                stacklevel=3,
            )
        return kept

    def coverage(self, items: IdIndex) -> float:
        """Fraction of the items in ``items`` that have text."""
        if len(items) == 0:
            return 0.0
        return sum(raw in self._texts for raw in items.ids.tolist()) / len(items)
