import pytest
import torch

from rarec.align import PrefixConfig, PrefixProjector, alignment_loss
from rarec.llm import LLMSpec

SPEC = LLMSpec(n_layers=3, n_kv_heads=2, head_dim=4, hidden_size=16)


def test_shapes_per_layer_and_prefix_length():
    proj = PrefixProjector(SPEC, PrefixConfig(id_dim=5, n_interests=2, n_id_tokens=2, n_ctx=3))
    kv = proj(torch.randn(7, 2, 5))
    assert len(kv) == 3
    for keys, values in kv:
        assert keys.shape == values.shape == (7, 2, 3 + 4, 4)  # (B, H_kv, P, D)


def test_untrained_values_are_zero_so_the_prefix_adds_nothing():
    proj = PrefixProjector(SPEC, PrefixConfig(id_dim=5, n_ctx=2))
    for _, values in proj(torch.randn(4, 1, 5)):
        assert torch.count_nonzero(values) == 0


@pytest.mark.parametrize("reparam", ["layer", "shared", "low_rank"])
def test_parameter_counts_and_gradients(reparam):
    cfg = PrefixConfig(id_dim=8, n_ctx=2, reparameterization=reparam, rank=3)
    proj = PrefixProjector(SPEC, cfg)
    out = 1 * 2 * SPEC.kv_dim
    expected_maps = {"layer": 3 * (8 * out + out), "shared": 8 * out + out,
                     "low_rank": 8 * 3 + 3 + 3 * (3 * out + out)}[reparam]
    assert sum(p.numel() for p in proj.parameters()) == expected_maps + 3 * 2 * 2 * SPEC.kv_dim
    loss = sum((k.sum() + (v ** 2).sum() + v.sum()) for k, v in proj(torch.randn(2, 1, 8)))
    loss.backward()
    for name, p in proj.named_parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) > 0, name
    if reparam == "shared":
        kv = proj(torch.randn(2, 1, 8))
        torch.testing.assert_close(kv[0][0][:, :, 2:], kv[2][0][:, :, 2:])  # same ID tokens in every layer


def test_ablations_change_the_prefix():
    no_id = PrefixProjector(SPEC, PrefixConfig(id_dim=8, n_ctx=2, use_id=False))
    assert no_id(None, batch_size=3)[0][0].shape == (3, 2, 2, 4)
    no_ctx = PrefixProjector(SPEC, PrefixConfig(id_dim=8, n_ctx=0))
    assert no_ctx(torch.randn(3, 1, 8))[0][0].shape == (3, 2, 1, 4)
    with pytest.raises(ValueError, match="empty"):
        PrefixConfig(id_dim=8, n_ctx=0, use_id=False)
    with pytest.raises(ValueError, match="shape \\(batch, 1, 8\\)"):
        no_ctx(torch.randn(3, 2, 8))


def test_alignment_loss_prefers_matching_pairs():
    text = torch.randn(6, 3, 2, 8)
    matched = text[:, :, None].clone()  # (B, L, 1, 2, kv): the ID prefix equals the text keys/values
    shuffled = matched[torch.randperm(6)]
    assert alignment_loss(matched, text, 0.1) < alignment_loss(shuffled, text, 0.1)


def test_weights_for_another_llm_are_refused_with_a_clear_message():
    from rarec.align._two_tower import TwoTowerAligner

    def aligner(spec):
        cfg = PrefixConfig(id_dim=8, n_ctx=2)
        return TwoTowerAligner(PrefixProjector(spec, cfg), PrefixProjector(spec, cfg))

    trained = aligner(SPEC)
    other = aligner(LLMSpec(n_layers=3, n_kv_heads=4, head_dim=8, hidden_size=64))
    with pytest.raises(ValueError, match="hidden 64.*trained with a different LLM"):
        other.load_state_dict(trained.state_dict())
    aligner(SPEC).load_state_dict(trained.state_dict())  # same LLM: fine
