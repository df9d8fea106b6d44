"""explorer.ViT against torchvision's VisionTransformer: same weights -> same logits; the key table covers every
Table 1 model; conversion errors name the key. Plus the config and the fused-attention switch."""
import pytest
import torch
import torchvision
from torchvision.models.vision_transformer import VisionTransformer

from explorer import CONFIGS, ViT, ViTConfig, from_torchvision
from explorer.families.torchvision import key_table, config_from_torchvision

TOLERANCE = 1e-4


def randomise(tv: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """torchvision's init leaves the head at zero and every LayerNorm at (1, 0), and zero qkv/out biases: a
    conversion that swapped ln_1 and ln_2, or dropped a bias, would go unseen. Perturb all of them."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in tv.named_parameters():
            if name.startswith("heads."):
                p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
            elif p.dim() <= 1 or name in ("class_token", "encoder.pos_embedding"):
                p.add_(torch.randn(p.shape, generator=generator) * 0.1)
    return tv.eval()


def torchvision_vit(builder: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return randomise(getattr(torchvision.models, builder)(weights=None, **kwargs), seed)


def logits_of(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# ---------------------------------------------------------------------------------------------------------------
# Full-size B/16, B/32, L/32: each torchvision model is built and converted once per module (they are large), and
# each runs as few forwards as possible: torchvision's, the explorer's explicit path, and (B/16, B/32) the fused one.

PRESET_OF = {"vit_b_16": "ViT-B/16", "vit_b_32": "ViT-B/32", "vit_l_32": "ViT-L/32"}


@pytest.fixture(scope="module", params=list(PRESET_OF))
def reference(request):
    """(builder, torchvision model, input, torchvision logits, converted explorer model, its explicit-path logits)."""
    tv = torchvision_vit(request.param)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    expected = logits_of(tv, x)
    model = from_torchvision(tv)
    model.fused_attention = False  # the explicit softmax path, the one a trace uses
    yield request.param, tv, x, expected, model, logits_of(model, x)
    del tv, model


def same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    a_state, b_state = a.state_dict(), b.state_dict()
    return a_state.keys() == b_state.keys() and all(torch.equal(a_state[k], b_state[k]) for k in a_state)


def test_from_torchvision_module_gives_torchvision_logits(reference):
    builder, tv, x, expected, model, logits = reference
    assert expected.std() > 0.3, "logits should be non-trivial"
    assert model.config.replace(name="") == CONFIGS[PRESET_OF[builder]].replace(name="")
    assert max_diff(logits, expected) < TOLERANCE


def test_from_state_dict_infers_heads(reference):
    builder, tv, x, expected, model, logits = reference
    state_dict = tv.state_dict()
    # heads from Table 1 (D -> h), nothing else given; copy=False skips a 1.2 GB copy for L/32 (copying is
    # tested on a small model below).
    from_dict = from_torchvision(state_dict, copy=False)
    assert from_dict.config == model.config
    assert from_dict.config.heads == tv.encoder.layers[0].self_attention.num_heads
    # The same parameters as the module conversion, whose logits equal torchvision's (test above).
    assert same_parameters(from_dict, model)


@pytest.mark.parametrize("reference", ["vit_b_32"], indirect=True)
def test_old_mlp_linear_key_names(reference):
    builder, tv, x, expected, model, logits = reference
    renamed = {
        k.replace(".mlp.0.", ".mlp.linear_1.").replace(".mlp.3.", ".mlp.linear_2."): v for k, v in tv.state_dict().items()
    }
    assert any(".mlp.linear_1." in k for k in renamed) and not any(".mlp.0." in k for k in renamed)
    assert same_parameters(from_torchvision(renamed), model)


@pytest.mark.parametrize("reference", ["vit_b_16", "vit_b_32"], indirect=True)
def test_fused_attention_matches_explicit(reference):
    builder, tv, x, expected, model, explicit = reference
    model.fused_attention = True
    try:
        assert model.fused_attention and all(block.msa.fused for block in model.blocks)
        fused = logits_of(model, x)
    finally:
        model.fused_attention = False
    assert not any(block.msa.fused for block in model.blocks)
    assert max_diff(fused, explicit) < 1e-5
    assert max_diff(fused, expected) < TOLERANCE


def test_non_224_image_size_as_swag_weights():
    tv = torchvision_vit("vit_b_32", seed=3, image_size=384)
    x = torch.randn(1, 3, 384, 384, generator=torch.Generator().manual_seed(2))
    model = from_torchvision(tv.state_dict())
    assert model.config.image_hw == (384, 384) and model.config.grid == (12, 12) and model.config.seq_len == 145
    assert max_diff(logits_of(model, x), logits_of(tv, x)) < TOLERANCE


# ---------------------------------------------------------------------------------------------------------------
# L/16 and H/14: real widths with two layers give numbers (head size d = 80 for H); the full-depth models are
# checked on the meta device, which has shapes but no storage, so the key table and every shape assert run for
# all 24 / 32 layers without allocating 1.2 GB / 2.5 GB.

@pytest.mark.parametrize(
    "width", [dict(patch_size=16, hidden_dim=1024, mlp_dim=4096, num_heads=16, image_size=64),  # L, d = 64
              dict(patch_size=14, hidden_dim=1280, mlp_dim=5120, num_heads=16, image_size=56)],  # H, d = 80
    ids=["L-width", "H-width"],
)
def test_large_and_huge_widths_two_layers(width):
    torch.manual_seed(0)
    tv = randomise(VisionTransformer(num_layers=2, **width))
    x = torch.randn(2, 3, width["image_size"], width["image_size"], generator=torch.Generator().manual_seed(4))
    model = from_torchvision(tv.state_dict())  # heads from the Table 1 width
    assert model.config.heads == 16 and model.config.head_dim == width["hidden_dim"] // 16
    model.fused_attention = False
    assert max_diff(logits_of(model, x), logits_of(tv, x)) < TOLERANCE


@pytest.mark.parametrize("builder, preset", [("vit_b_16", "ViT-B/16"), ("vit_b_32", "ViT-B/32"), ("vit_l_16", "ViT-L/16"),
                                             ("vit_l_32", "ViT-L/32"), ("vit_h_14", "ViT-H/14")])
def test_key_table_covers_every_table_1_model_on_meta(builder, preset):
    with torch.device("meta"):
        tv = getattr(torchvision.models, builder)(weights=None)
    state_dict = tv.state_dict()
    config = config_from_torchvision(state_dict)
    assert config.replace(name="") == CONFIGS[preset].replace(name="")
    table = key_table(config.depth, pre_logits=False)
    sources = [names[0] for names in table.values()]
    assert len(sources) == len(set(sources)) == len(state_dict)  # a bijection onto torchvision's keys
    assert set(sources) == set(state_dict)

    model = from_torchvision(state_dict, name=preset)  # every key looked up, every shape asserted
    assert all(p.is_meta for p in model.parameters())
    ours = dict(model.named_parameters())
    for our_key, names in table.items():
        assert ours[our_key].shape == state_dict[names[0]].shape, our_key
    assert model.num_parameters() == sum(p.numel() for p in tv.parameters())

    # The shape assert reaches the last layer: a wrong shape there is refused by name.
    last = f"encoder.layers.encoder_layer_{config.depth - 1}.ln_2.weight"
    broken = dict(state_dict, **{last: torch.empty(config.hidden_dim - 1, device="meta")})
    with pytest.raises(ValueError, match=last.replace(".", r"\.")):
        from_torchvision(broken)


def test_table_1_parameter_counts_match_the_paper():
    # Paper, Table 1: 86M, 307M, 632M (torchvision's L/16 has 304M: the paper rounds from a different head).
    for preset, paper in (("ViT-B/16", 86e6), ("ViT-L/16", 307e6), ("ViT-H/14", 632e6)):
        with torch.device("meta"):
            count = ViT(CONFIGS[preset]).num_parameters()
        assert abs(count - paper) / paper < 0.015, (preset, count)


# ---------------------------------------------------------------------------------------------------------------
# Conversion errors name the key

@pytest.fixture
def small_state_dict():
    torch.manual_seed(0)
    tv = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64,
                           num_classes=10)
    return randomise(tv).state_dict()


def test_small_state_dict_converts_with_heads_given(small_state_dict):
    with pytest.raises(ValueError, match="heads"):
        from_torchvision(small_state_dict)  # D = 32 is not a Table 1 width
    model = from_torchvision(small_state_dict, heads=4)
    assert model.config.heads == 4 and model.config.depth == 2 and model.config.mlp_dim == 64


@pytest.mark.parametrize("key", ["encoder.layers.encoder_layer_1.ln_2.bias",
                                 "encoder.layers.encoder_layer_0.self_attention.in_proj_bias",
                                 "encoder.ln.weight", "class_token", "heads.head.bias"])
def test_missing_key_is_named(small_state_dict, key):
    del small_state_dict[key]
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        from_torchvision(small_state_dict, heads=4)


def test_missing_middle_layer_is_named(small_state_dict):
    moved = {k.replace("encoder_layer_1.", "encoder_layer_2."): v for k, v in small_state_dict.items()}
    with pytest.raises(ValueError, match=r"encoder_layer_1\."):
        from_torchvision(moved, heads=4)


def test_missing_first_mlp_is_a_value_error(small_state_dict):
    for key in [k for k in small_state_dict if k.startswith("encoder.layers.encoder_layer_0.mlp.0.")]:
        del small_state_dict[key]
    with pytest.raises(ValueError, match=r"encoder_layer_0\.mlp\.0\.weight"):
        from_torchvision(small_state_dict, heads=4)


@pytest.mark.parametrize("key", ["encoder.layers.encoder_layer_0.self_attention.in_proj_weight",
                                 "encoder.layers.encoder_layer_1.mlp.3.bias", "conv_proj.bias"])
def test_wrong_shape_is_named(small_state_dict, key):
    original = small_state_dict[key]
    small_state_dict[key] = torch.zeros(*original.shape[:-1], original.shape[-1] + 1)
    with pytest.raises(ValueError, match=key.replace(".", r"\.") + r" has shape"):
        from_torchvision(small_state_dict, heads=4)


@pytest.mark.parametrize("key", ["heads.extra.weight", "encoder.layers.encoder_layer_0.self_attention.scale"])
def test_extra_unused_key_is_named(small_state_dict, key):
    small_state_dict[key] = torch.zeros(3)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        from_torchvision(small_state_dict, heads=4)


def test_conversion_copies_unless_told(small_state_dict):
    x = torch.randn(1, 3, 32, 32)
    copied = from_torchvision(small_state_dict, heads=4)
    shared = from_torchvision(small_state_dict, heads=4, copy=False)
    before = logits_of(copied, x)
    small_state_dict["heads.head.bias"].add_(1.0)
    assert torch.equal(logits_of(copied, x), before)
    assert torch.allclose(logits_of(shared, x), before + 1.0, atol=1e-5)


def test_float64_state_dict_gives_a_float32_model(small_state_dict):
    model = from_torchvision({k: v.double() for k, v in small_state_dict.items()}, heads=4)
    assert all(p.dtype == torch.float32 for p in model.parameters())


# ---------------------------------------------------------------------------------------------------------------
# The model itself, small

def test_tiny_fused_matches_explicit_and_batch_is_independent(tiny_model):
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    tiny_model.fused_attention = True
    fused = logits_of(tiny_model, x)
    tiny_model.fused_attention = False
    explicit = logits_of(tiny_model, x)
    assert fused.shape == (3, 10)
    assert max_diff(fused, explicit) < 1e-5
    assert max_diff(logits_of(tiny_model, x[1:2]), explicit[1:2]) < 1e-5  # no mixing across the batch


def test_explicit_attention_is_softmax_of_scaled_scores(tiny_model):
    # Recompute block 1's attention by hand from its qkv weights: A = softmax(q k^T / sqrt(d)).
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    record = {}
    with torch.no_grad():
        tiny_model(x, record)
        msa = tiny_model.blocks[0].msa
        qkv = record["blocks.1.ln_1"] @ msa.qkv.weight.T + msa.qkv.bias  # (1, T, 3D)
        D, h = tiny_model.config.hidden_dim, tiny_model.config.heads
        q, k, _ = qkv.split(D, dim=-1)
        q = q.reshape(1, -1, h, D // h).transpose(1, 2)
        k = k.reshape(1, -1, h, D // h).transpose(1, 2)
        expected = torch.softmax(q @ k.transpose(-1, -2) / (D // h) ** 0.5, dim=-1)
    assert torch.allclose(record["blocks.1.attn.weights"], expected, atol=1e-6)


def test_wrong_input_shape_says_what_was_expected(tiny_model):
    with pytest.raises(ValueError, match=r"expected \(B, 3, 32, 32\) but got \(1, 3, 48, 32\)"):
        tiny_model(torch.zeros(1, 3, 48, 32))


def test_forward_with_a_record_does_not_change_logits(tiny_model):
    x = torch.randn(2, 3, 32, 32)
    plain = logits_of(tiny_model, x)
    record = {}
    with torch.no_grad():
        recorded = tiny_model(x, record)
    assert max_diff(plain, recorded) < 1e-5 and torch.equal(record["head.logits"], recorded)


def test_representation_size_head():
    torch.manual_seed(0)
    tv = randomise(VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=4, hidden_dim=32,
                                     mlp_dim=64, num_classes=7, representation_size=16))
    x = torch.randn(2, 3, 32, 32)
    model = from_torchvision(tv)
    assert model.config.representation_size == 16
    assert max_diff(logits_of(model, x), logits_of(tv, x)) < TOLERANCE


# ---------------------------------------------------------------------------------------------------------------
# Config

def test_table_1_presets():
    # Paper, Table 1: (layers, hidden D, MLP size, heads).
    table_1 = {"B": (12, 768, 3072, 12), "L": (24, 1024, 4096, 16), "H": (32, 1280, 5120, 16)}
    for preset, (size, patch) in {"ViT-B/16": ("B", 16), "ViT-B/32": ("B", 32), "ViT-L/16": ("L", 16),
                                  "ViT-L/32": ("L", 32), "ViT-H/14": ("H", 14)}.items():
        config = CONFIGS[preset]
        assert (config.depth, config.hidden_dim, config.mlp_dim, config.heads) == table_1[size]
        assert config.patch_size == patch and config.image_hw == (224, 224)
    b16 = CONFIGS["ViT-B/16"]
    assert (b16.num_patches, b16.seq_len, b16.patch_dim, b16.head_dim, b16.grid) == (196, 197, 768, 64, (14, 14))
    assert CONFIGS["ViT-H/14"].head_dim == 80 and CONFIGS["ViT-H/14"].grid == (16, 16)


def test_config_validation_and_roundtrip():
    with pytest.raises(ValueError, match="not divisible by the patch size"):
        ViTConfig(image_size=30, patch_size=8)
    with pytest.raises(ValueError, match="not divisible by h"):
        ViTConfig(hidden_dim=30, heads=4)
    config = ViTConfig(image_size=(32, 48), patch_size=8, hidden_dim=16, heads=2, depth=1, mlp_dim=8, num_classes=3)
    assert config.grid == (4, 6) and config.num_patches == 24
    assert ViTConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="Unknown config fields"):
        ViTConfig.from_dict(dict(config.to_dict(), colour="red"))


def test_non_square_model_runs():
    config = ViTConfig(image_size=(16, 32), patch_size=8, hidden_dim=16, heads=2, depth=1, mlp_dim=8, num_classes=3)
    model = ViT(config).eval()
    record = {}
    with torch.no_grad():
        model(torch.randn(1, 3, 16, 32), record)
    assert record["embed.feature_maps"].shape == (1, 16, 2, 4)
    assert record["blocks.1.attn.weights"].shape == (1, 2, 9, 9)
