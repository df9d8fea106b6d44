"""The token layout (explorer/tokens.py): one accessor for the sequence's tokens, no hand slices elsewhere, and the
paper's ViT unchanged by it."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer import CONFIGS, ViT, ViTConfig
from explorer.tokens import TokenLayout

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "explorer"


# ---------------------------------------------------------------------------------------------------------------
# No hand slice of the token axis outside explorer/tokens.py

def _is_int(node, value: int) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int and node.value == value


def _whole(node) -> bool:
    """`:` or `...` in a subscript."""
    return (isinstance(node, ast.Slice) and node.lower is None and node.upper is None and node.step is None) or (
        isinstance(node, ast.Constant) and node.value is Ellipsis)


def _name(node) -> str | None:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


def hand_slices(source: str) -> list[tuple[int, str]]:
    """(line, expression) of every subscript that looks like a hand cut of the token axis: `1:` or `:1` anywhere in
    it (`z[:, 1:]`, `E[:, :1]`, `A[..., 1:, 1:]`), an index 0 after `:` or `...` (`z[:, 0]`, `rows[..., 0]`); and
    `T - 1`, `seq_len - 1`, `N + 1`, `num_patches + 1`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript):
            parts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            first_or_rest = any(isinstance(p, ast.Slice) and p.step is None and (
                (_is_int(p.lower, 1) and p.upper is None) or (p.lower is None and _is_int(p.upper, 1))) for p in parts)
            zero_after_whole = any(_is_int(p, 0) and any(_whole(q) for q in parts[:i]) for i, p in enumerate(parts))
            if first_or_rest or zero_after_whole:
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)) and _is_int(node.right, 1):
            name = _name(node.left)
            if (isinstance(node.op, ast.Sub) and name in ("T", "seq_len")) or (
                    isinstance(node.op, ast.Add) and name in ("N", "num_patches")):
                found.append((node.lineno, ast.unparse(node)))
    return found


# Subscripts that match the pattern but cut another axis, each with the reason.
NOT_TOKENS = {
    ("explorer/analysis.py", "sums[..., 0]"): "the weighted-distance column of an einsum, not a token",
    ("explorer/app/interact.py", "slot[1:]"): "a compare slot's number after its letter ('B2')",
    ("explorer/app/registry.py", "why[1:]"): "a sentence's letters",
    ("explorer/app/views/interventions.py", "stages[1:]"): "the patchable stages after embed.z0",
    ("explorer/interventions.py", "probabilities.gather(1, targets[:, None])[:, 0]"): "gather's one column: (B, 1) -> (B,)",
    ("explorer/interventions.py", "T - 1"): "the last token index, in an error message about positions",
    ("explorer/app/ui.py", "OPTION_NAMES[1:]"): "option names",
    ("explorer/app/ui.py", "option_values[1:]"): "option values",
    ("explorer/app/views/declare.py", "OPTION_NAMES[1:]"): "option names",
    ("explorer/data.py", "images.shape[1:]"): "a shape",
    ("explorer/data.py", "array[:, :, 0]"): "an image's channel",
    ("explorer/explain.py", "(~dropped).nonzero()[:, 0]"): "nonzero's index column",
    ("explorer/explain.py", "N + 1"): "counts of patches 0..N on a curve",
    ("explorer/explain.py", "probabilities[1:]"): "the trapezoid rule over a curve",
    ("explorer/images.py", "array[:, :, 0]"): "an image's channel",
    ("explorer/images.py", "array[:, 0]"): "an image's first pixel column",
    ("explorer/render/attention.py", "bounds[1:]"): "block boundaries of patches",
    ("explorer/render/eq1.py", "raw[:n, :, :, 0]"): "a filter's channel",
    ("explorer/render/eq1.py", "custom[..., 0]"): "hover data's first field",
    ("explorer/render/residual.py", "z.shape[1:]"): "a shape",
    ("explorer/survey/cli.py", "sys.argv[1:]"): "command-line arguments",
    ("explorer/survey/figures.py", "image[:, :, 0]"): "an image's channel",
    ("explorer/survey/summary.py", "distance.shape[1:]"): "a shape",
    ("explorer/train.py", "sys.argv[1:]"): "command-line arguments",
}


def test_the_scan_finds_hand_slices_of_the_token_axis():
    bad = ("patches = z[:, 1:]\ncls = z_L[:, 0]\nrow = A[..., 0, 1:]\nE = pos[:, :1]\nN = config.seq_len - 1\n"
           "T = num_patches + 1\nm = attention[:, query, 1:]\n")
    assert [line for line, _ in hand_slices(bad)] == [1, 2, 3, 4, 5, 6, 7]
    good = ("patches = layout.patches(z)\nfirst = names[0]\nx = image[0]\nrows = shape[0] - 1\nk = i + 2\n"
            "y = a[2:]\n")
    assert hand_slices(good) == []


def test_no_module_but_tokens_slices_the_token_axis_by_hand():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative == "explorer/tokens.py":  # the one accessor
            continue
        found += [(relative, line, text) for line, text in hand_slices(path.read_text())
                  if (relative, text) not in NOT_TOKENS]
    assert not found, f"cut the token axis with explorer.tokens.TokenLayout instead: {found}"


# ---------------------------------------------------------------------------------------------------------------
# The layout itself

def test_the_layouts_of_the_family():
    paper = CONFIGS["ViT-B/16"].layout
    assert paper.prefix_labels == ("CLS",) and paper.T == 197 and paper.pooled == 0 and paper.patch_token(0) == 1
    dinov2 = CONFIGS["ViT-B/16"].replace(image_size=224, register_tokens=4, position_covers="class_and_patches").layout
    assert dinov2.labels()[:6] == ["CLS", "REG1", "REG2", "REG3", "REG4", "patch 0"] and dinov2.T == 1 + 4 + 196
    assert dinov2.position_tokens == (0, *range(5, 201)) and dinov2.position.prefix_labels == ("CLS",)
    deit = CONFIGS["ViT-B/16"].replace(distillation_token=True, pooling="class_and_distillation").layout
    assert (deit.pooled, deit.distillation, deit.patch_token(3), deit.label(1)) == (0, 1, 5, "DIST")
    mae = CONFIGS["ViT-B/16"].replace(class_token=False, pooling="mean", fc_norm=True).layout
    assert mae.num_prefix == 0 and mae.T == 196 and mae.pooled is None and mae.query_token is None
    with pytest.raises(ValueError, match="no class token"):
        mae.require_query_token()
    with pytest.raises(ValueError, match="outside 0..200"):
        dinov2.label(201)


def test_patches_and_prefix_cut_torch_and_numpy_alike_on_any_axis():
    layout = TokenLayout(("CLS", "REG1", "REG2"), 4)
    z = torch.arange(2 * 7 * 3).reshape(2, 7, 3)  # (B, T, D)
    assert torch.equal(layout.patches(z), z[:, 3:]) and torch.equal(layout.prefix(z), z[:, :3])
    assert torch.equal(layout.token(z, 1), z[:, 1])
    rows = np.arange(5 * 7).reshape(5, 7)  # (L, T)
    assert np.array_equal(layout.patches(rows, -1), rows[:, 3:]) and np.array_equal(layout.prefix(rows, 1), rows[:, :3])


@pytest.mark.parametrize("changes", [dict(pooling="class", class_token=False),
                                     dict(pooling="class_and_distillation"),
                                     dict(position_covers="class_and_patches", class_token=False, pooling="mean"),
                                     dict(fc_norm=True),
                                     dict(activation="relu")])
def test_an_inconsistent_layout_is_refused(changes):
    CONFIGS["ViT-Tiny-Test/8"].replace(pooling="mean", class_token=False, fc_norm=True)  # consistent
    with pytest.raises(ValueError):
        CONFIGS["ViT-Tiny-Test/8"].replace(**changes)


def test_registers_the_position_embedding_skips_and_layer_scale_compute_what_they_say():
    """A DINOv2-like model against the sequence written out by hand: E_pos on the class token and the patches only,
    the registers after the class token, diag(gamma) on both branches."""
    torch.manual_seed(0)
    config = CONFIGS["ViT-Tiny-Test/8"].replace(register_tokens=2, position_covers="class_and_patches",
                                                layer_scale=True, pre_norm=True)
    model = ViT(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(std=0.3)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        patches = model.patch_embedding(x)  # (B, N, D)
        E = model.position_embedding  # (1, 1 + N, D)
        cls = model.class_token.expand(2, -1, -1) + E[:, :1]
        z = torch.cat([cls, model.register_tokens.expand(2, -1, -1), patches + E[:, 1:]], dim=1)  # (B, 1 + 2 + N, D)
        z = model.norm_pre(z)
        for block in model.blocks:
            z = z + block.gamma_1 * block.msa(block.norm_1(z))
            z = z + block.gamma_2 * block.mlp(block.norm_2(z))
        expected = model.head(model.norm(z[:, 0]))
        assert (model(x) - expected).abs().max() < 1e-5
        assert (model(x, record={}) - expected).abs().max() < 1e-5


# ---------------------------------------------------------------------------------------------------------------
# The paper's ViT is unchanged

def test_an_old_config_json_reads_as_the_paper_layout():
    saved = json.loads((ROOT / "checkpoints" / "vit_fashion_mnist.json").read_text())["config"]
    assert "pooling" not in saved  # written before the layout fields existed
    config = ViTConfig.from_dict(saved)
    assert config.layout == TokenLayout(("CLS",), 49, "class", "all") and config.seq_len == 50
    assert [name for name, _ in ViT(config).named_parameters()][:4] == [
        "class_token", "position_embedding", "patch_embedding.projection.weight", "patch_embedding.projection.bias"]


# Logits of the shipped Fashion-MNIST model on a fixed input, computed with main's model before the layout existed
# (commit d6c600b, explorer.load("vit_fashion_mnist")).
FASHION_INPUT = (torch.arange(28 * 28, dtype=torch.float32).reshape(1, 1, 28, 28) * 0.37).sin()
FASHION_LOGITS = [0.07931199669837952, 0.05374690890312195, -0.3424983620643616, 0.8269168138504028,
                  -0.8989100456237793, 0.0660124272108078, -0.5425242185592651, -0.025769881904125214,
                  3.346174478530884, -0.1321440190076828]


def test_the_fashion_checkpoint_gives_the_logits_it_gave_before():
    from explorer import load

    model = load("vit_fashion_mnist").model
    with torch.no_grad():
        for logits in (model(FASHION_INPUT), model(FASHION_INPUT, record={})):
            assert (logits[0] - torch.tensor(FASHION_LOGITS)).abs().max() < 1e-5


# ---------------------------------------------------------------------------------------------------------------
# The page's words and figures list the real tokens

def test_eq1_words_and_figures_show_the_real_sequence():
    from explorer import render
    from explorer.app.text import equation, explanation

    config = CONFIGS["ViT-B/16"].replace(image_size=256, register_tokens=4, position_covers="class_and_patches")
    assert "T = 1 + 4 + 256 = 261 rows" in explanation(1, config)
    assert "not the registers" in explanation(1, config)
    assert "x_\\text{reg}^{1..4}" in equation(1, config) and "\\mathbb{R}^{257 \\times 768}" in equation(1, config)
    deit = CONFIGS["ViT-Tiny-Test/8"].replace(distillation_token=True, pooling="class_and_distillation")
    assert "T = 1 + 1 + 16 = 18 rows" in explanation(1, deit)
    layout = config.layout
    sequence = render.patch_sequence(np.zeros((256, 16, 16, 3), dtype=np.float32), selected=0, layout=layout)
    assert "T = 1 + 4 + N = 261 tokens" in sequence.layout.title.text
    weights = np.full((layout.T, layout.T), 1 / layout.T, dtype=np.float32)
    matrix = render.attention_matrix(weights, config.grid, "A", layout)
    assert list(matrix.data[0].x[:6]) == ["cls", "reg1", "reg2", "reg3", "reg4", "patch 0 (0,0)"]
    norms = render.token_norms(np.ones((3, layout.T), dtype=np.float32), config.grid, layout)
    lines = [trace.name for trace in norms.data if trace.type == "scatter" and trace.mode == "lines+markers"]
    assert lines == ["CLS (class token)", "REG1", "REG2", "REG3", "REG4", "patch tokens (mean)"]


def test_a_descendant_saves_and_loads_as_a_project_checkpoint(tmp_path):
    """Its layout fields travel in the JSON (only where they differ from the paper's), and the weights come back."""
    from explorer.images import Preprocessing
    from explorer.weights import load_checkpoint, save_checkpoint

    config = CONFIGS["ViT-Tiny-Test/8"].replace(distillation_token=True, register_tokens=2, layer_scale=True,
                                                pooling="class_and_distillation", position_covers="patches")
    assert {"distillation_token", "register_tokens", "pooling"} <= set(config.to_dict())
    assert "pre_norm" not in config.to_dict() and ViTConfig.from_dict(config.to_dict()) == config
    torch.manual_seed(0)
    model = ViT(config).eval()
    weights, _ = save_checkpoint(tmp_path / "deit_like", model, [f"c{i}" for i in range(10)],
                                 Preprocessing(resize_size=32, crop_size=32))
    loaded = load_checkpoint(weights).model
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert loaded.config == config and torch.equal(loaded(x), model(x))
