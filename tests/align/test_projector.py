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


def test_balanced_block_scales_give_each_block_an_equal_share_of_the_variance():
    from rarec.align._projector import balanced_block_scales

    generator = torch.Generator().manual_seed(0)
    vectors = torch.cat([0.1 * torch.randn(500, 1, 4, generator=generator),  # a small block of 4 columns
                         3.0 * torch.randn(500, 1, 12, generator=generator),  # a large one of 12
                         torch.zeros(500, 1, 2)], dim=2)  # and one without variance
    scales = balanced_block_scales(vectors, [4, 12, 2])
    scaled = (vectors * scales).reshape(500, -1)
    shares = [part.sum() for part in scaled.var(0).split([4, 12, 2])]
    torch.testing.assert_close(shares[0], shares[1], rtol=1e-4, atol=0)
    assert torch.equal(scales[16:], torch.ones(2))  # no variance: left alone
    torch.testing.assert_close(scaled.var(0).sum(), vectors.reshape(500, -1).var(0).sum(), rtol=1e-4, atol=0)
    assert scales[0] > 10 * scales[4]  # the small block is scaled up, the large one down
    with pytest.raises(ValueError, match="do not add up"):
        balanced_block_scales(vectors, [4, 12])


def test_balanced_column_scales_also_give_each_column_of_a_block_an_equal_share():
    from rarec.align._projector import balanced_block_scales

    generator = torch.Generator().manual_seed(0)
    falling = torch.linspace(3.0, 0.1, 12)  # a factor set's columns, their scale falling as singular values do
    vectors = torch.cat([0.1 * torch.randn(500, 1, 4, generator=generator),
                         falling * torch.randn(500, 1, 12, generator=generator),
                         torch.zeros(500, 1, 2)], dim=2)
    scales = balanced_block_scales(vectors, [4, 12, 2], columns=True)
    variance = (vectors * scales).reshape(500, -1).var(0)
    torch.testing.assert_close(variance[:4], torch.full((4,), float(variance[:4].mean())), rtol=1e-4, atol=0)
    torch.testing.assert_close(variance[4:16], torch.full((12,), float(variance[4:16].mean())), rtol=1e-4, atol=0)
    torch.testing.assert_close(variance[:4].sum(), variance[4:16].sum(), rtol=1e-4, atol=0)  # blocks still equal
    torch.testing.assert_close(variance.sum(), vectors.reshape(500, -1).var(0).sum(), rtol=1e-4, atol=0)
    assert torch.equal(scales[16:], torch.ones(2))  # no variance: left alone
    assert scales[15] > 10 * scales[4]  # the block's trailing column is scaled up against its leading one
    blocks = balanced_block_scales(vectors, [4, 12, 2])
    assert torch.equal(blocks[4:16], blocks[4].expand(12))  # without columns=True one factor per block


@pytest.mark.parametrize("reparam", ["layer", "low_rank"])
def test_the_input_scale_multiplies_each_id_column_before_the_map(reparam):
    proj = PrefixProjector(SPEC, PrefixConfig(id_dim=5, n_ctx=0, reparameterization=reparam, rank=3))
    with torch.no_grad():
        proj.bias.normal_()
    x, scale = torch.randn(3, 1, 5), torch.tensor([1.0, 2.0, 0.5, 4.0, 1.0])
    plain = proj.id_prefix(x * scale)
    proj.input_scale.copy_(scale)
    torch.testing.assert_close(proj.id_prefix(x), plain)


def test_input_scales_are_saved_only_when_set_and_read_as_ones_when_absent():
    from rarec.align._two_tower import TwoTowerAligner

    def aligner():
        cfg = PrefixConfig(id_dim=8, n_ctx=2)
        return TwoTowerAligner(PrefixProjector(SPEC, cfg), PrefixProjector(SPEC, cfg))

    balanced = aligner()
    balanced.item_prefix.input_scale.fill_(3.0)
    older = {k: v for k, v in balanced.state_dict().items() if not k.endswith("input_scale")}  # as format 7 wrote
    loaded = aligner()
    loaded.item_prefix.input_scale.fill_(5.0)
    loaded.load_state_dict(older)
    assert torch.equal(loaded.item_prefix.input_scale, torch.ones(8))
    loaded.load_state_dict(balanced.state_dict())
    assert torch.equal(loaded.item_prefix.input_scale, torch.full((8,), 3.0))


@pytest.mark.parametrize("reparam", ["layer", "shared"])
def test_id_blocks_give_each_block_its_own_tokens_read_from_its_columns_only(reparam):
    cfg = PrefixConfig(id_dim=5, n_interests=2, n_id_tokens=2, n_ctx=1, reparameterization=reparam, id_blocks=[2, 3])
    assert cfg.id_blocks == (2, 3) and cfg.tokens_per_vector == 4 and cfg.n_id_total == 8 and cfg.length == 9
    proj = PrefixProjector(SPEC, cfg, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # values start at zero; give every weight a value so that any leak would show
        proj.weight.normal_(generator=torch.Generator().manual_seed(1))
    x = torch.randn(3, 2, 5)
    tokens = proj.id_prefix(x)  # (B, L, K * 4, 2, kv); per vector: block 0's two tokens, then block 1's
    assert tokens.shape == (3, 3, 8, 2, SPEC.kv_dim)
    moved = x.clone()
    moved[:, :, 2:] += 1.0  # block 1's columns only
    after = proj.id_prefix(moved)
    for vector in range(2):
        first, second = slice(4 * vector, 4 * vector + 2), slice(4 * vector + 2, 4 * vector + 4)
        torch.testing.assert_close(after[:, :, first], tokens[:, :, first])  # block 0's tokens do not read block 1
        assert not torch.allclose(after[:, :, second], tokens[:, :, second])
    tokens.sum().backward()
    hidden = proj.block_mask == 0  # (d, out): the cross-block entries
    assert hidden.any() and torch.count_nonzero(proj.weight.grad[:, hidden]) == 0  # they never train


def test_id_blocks_are_checked():
    with pytest.raises(ValueError, match="low_rank"):
        PrefixConfig(id_dim=5, reparameterization="low_rank", id_blocks=(2, 3))
    with pytest.raises(ValueError, match="at least one block"):
        PrefixConfig(id_dim=5, id_blocks=())
    with pytest.raises(ValueError, match="id_blocks"):
        PrefixConfig(id_dim=5, id_blocks=(0, 5))
    with pytest.raises(ValueError, match=r"add up to 4, but the ID vectors have 5 columns"):
        PrefixProjector(SPEC, PrefixConfig(id_dim=5, id_blocks=(1, 3)))


def test_one_block_is_the_whole_vector():
    whole = PrefixProjector(SPEC, PrefixConfig(id_dim=5, n_ctx=2), generator=torch.Generator().manual_seed(0))
    one = PrefixProjector(SPEC, PrefixConfig(id_dim=5, n_ctx=2, id_blocks=(5,)),
                          generator=torch.Generator().manual_seed(0))
    one.load_state_dict(whole.state_dict())  # the mask is not saved: the same tensors fit
    x = torch.randn(3, 1, 5)
    for (k1, v1), (k2, v2) in zip(whole(x), one(x)):
        torch.testing.assert_close(k1, k2)
        torch.testing.assert_close(v1, v2)
