"""Next-item losses shared by the sequential backbones."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def draw_negatives(n: int | None, n_items: int, generator: torch.Generator, device: torch.device) -> torch.Tensor | None:
    """``n`` items drawn uniformly with ``generator`` for one batch's sampled softmax, or ``None`` when ``n`` is."""
    if n is None:
        return None
    return torch.randint(0, n_items, (n,), generator=generator).to(device)


def next_item_loss(user: torch.Tensor, target: torch.Tensor, table: torch.Tensor,
                   negatives: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy of each target item given its user vector.

    ``user`` (B, d) and ``target`` (B,) pair up; ``table`` (n_items, d) holds the
    item embeddings. With ``negatives`` ``None`` the softmax runs over the whole
    catalogue; otherwise over the target and the ``negatives`` (N,), items drawn
    uniformly and shared by the batch, where a negative equal to the row's target
    (an accidental hit) is masked out.
    """
    if negatives is None:
        return F.cross_entropy(user @ table.T, target)  # (B, n_items)
    positive = (user * table[target]).sum(-1, keepdim=True)  # (B, 1)
    negative = user @ table[negatives].T  # (B, N)
    negative = negative.masked_fill(negatives[None, :] == target[:, None], -torch.inf)
    logits = torch.cat([positive, negative], dim=1)  # (B, 1 + N)
    return F.cross_entropy(logits, torch.zeros(len(target), dtype=torch.long, device=logits.device))
