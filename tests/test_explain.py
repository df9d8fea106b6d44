"""explorer.explain against independent references: the relevance formula on a hand-written forward, the grad-cam
package, hand-built shortened sequences, torchvision's interpolate_embeddings, and a model built so that one known
patch decides its answer."""
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models.vision_transformer import VisionTransformer, interpolate_embeddings

from explorer import ViT, ViTConfig, from_torchvision, load_checkpoint
from explorer.explain import (
    GraphRecord,
    at_resolution,
    deletion_curve,
    drop_patches,
    faithfulness,
    grad_cam,
    insertion_curve,
    interpolate_position_embedding,
    keep_patches,
    patch_order,
    relevance,
)
from explorer.images import open_image

ROOT = Path(__file__).resolve().parent.parent


def hand_forward(model: ViT, x: torch.Tensor, keep=None):
    """The ViT written out from its parameters (not its modules' forwards), on the class token and the patches
    `keep` (all when None). -> (logits (B, K), attention weights A_l (B, h, T, T) for l = 1..L, in the graph)."""
    c = model.config
    D, h = c.hidden_dim, c.heads
    d = D // h
    projection = model.patch_embedding.projection
    patches = F.conv2d(x, projection.weight, projection.bias, stride=c.patch_size).flatten(2).transpose(1, 2)
    tokens = torch.cat([model.class_token.expand(len(x), -1, -1), patches], dim=1) + model.position_embedding
    if keep is not None:
        tokens = tokens[:, [0] + [i + 1 for i in keep]]
    z, weights = tokens, []
    for block in model.blocks:
        n = F.layer_norm(z, (D,), block.norm_1.weight, block.norm_1.bias, c.layer_norm_eps)
        q, k, v = (t.unflatten(-1, (h, d)).transpose(1, 2)
                   for t in F.linear(n, block.msa.qkv.weight, block.msa.qkv.bias).chunk(3, dim=-1))
        A = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
        weights.append(A)
        z = z + F.linear((A @ v).transpose(1, 2).flatten(2), block.msa.projection.weight, block.msa.projection.bias)
        n = F.layer_norm(z, (D,), block.norm_2.weight, block.norm_2.bias, c.layer_norm_eps)
        hidden = F.gelu(F.linear(n, block.mlp.fc1.weight, block.mlp.fc1.bias))
        z = z + F.linear(hidden, block.mlp.fc2.weight, block.mlp.fc2.bias)
    y = F.layer_norm(z[:, 0], (D,), model.norm.weight, model.norm.bias, c.layer_norm_eps)
    return F.linear(y, model.head.weight, model.head.bias), weights


def relevance_from_formula(model: ViT, x: torch.Tensor, target: int) -> np.ndarray:
    """Chefer et al. 2021 in float64 numpy on the hand-written forward: R = I; R += E_h[(∇A ⊙ A)^+] R."""
    logits, weights = hand_forward(model, x)
    gradients = torch.autograd.grad(logits[0, target], weights)
    T = weights[0].shape[-1]
    R = np.eye(T)
    for A, grad in zip(weights, gradients):
        A, grad = A[0].detach().double().numpy(), grad[0].double().numpy()  # (h, T, T)
        R = R + np.maximum(grad * A, 0).mean(axis=0) @ R
    return R[0, 1:].reshape(model.config.grid)


def fashion_image(bundle, name="fashion_0000_ankle_boot.png"):
    return bundle.preprocessing(open_image(ROOT / "assets" / name).image)  # (1, 1, 28, 28)


@pytest.fixture(scope="module")
def fashion():
    return load_checkpoint(ROOT / "checkpoints" / "vit_fashion_mnist")


# ---------------------------------------------------------------------------------------------------------------
# relevance

def test_only_a_graph_record_keeps_the_graph(tiny_model):
    x = torch.randn(1, 3, 32, 32)
    plain, graph = {}, GraphRecord()
    tiny_model(x, plain)
    tiny_model(x, graph)
    assert not any(t.requires_grad for t in plain.values())  # explorer.trace relies on detached stages
    assert set(graph) == set(plain) and graph["blocks.1.attn.weights"].grad_fn is not None
    for name in plain:
        assert torch.equal(graph[name], plain[name])


def test_relevance_equals_the_formula_on_a_hand_written_forward(tiny_model):
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    logits, _ = hand_forward(tiny_model, x)
    assert torch.allclose(logits, tiny_model(x), atol=1e-5)  # the hand-written forward is the model
    top = int(logits.argmax())
    for target in (None, (top + 3) % 10):
        expected = relevance_from_formula(tiny_model, x, top if target is None else target)
        ours = relevance(tiny_model, x, target)
        assert ours.shape == (4, 4)
        assert np.ptp(expected) > 1e-2  # a map with structure, far above the tolerance
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_relevance_of_a_batch_is_each_image_alone(tiny_model):
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    targets = [1, 4, 7]
    maps = relevance(tiny_model, x, targets)
    assert maps.shape == (3, 4, 4)
    for i in range(3):
        np.testing.assert_allclose(maps[i], relevance(tiny_model, x[i:i + 1], targets[i]), rtol=1e-5, atol=1e-6)
    assert not np.allclose(maps[0], maps[1], atol=1e-3)


def test_relevance_depends_on_the_target_on_the_trained_model(fashion):
    x = fashion_image(fashion)
    with torch.no_grad():
        first, second = fashion.model(x)[0].topk(2).indices.tolist()
    assert fashion.class_names[first] == "Ankle boot"
    a, b = relevance(fashion.model, x, first), relevance(fashion.model, x, second)
    assert a.shape == b.shape == (7, 7)
    np.testing.assert_array_equal(relevance(fashion.model, x), a)  # None = the top class
    assert np.abs(a - b).max() > 0.1 * max(np.abs(a).max(), np.abs(b).max())


# ---------------------------------------------------------------------------------------------------------------
# Grad-CAM against pytorch-grad-cam

def _scale_cam_image(cam: np.ndarray, size=None) -> np.ndarray:
    """pytorch_grad_cam.utils.image.scale_cam_image, written out: per image (c − min) / (1e-7 + max), then resize."""
    out = []
    for image in cam:
        image = image - image.min()
        image = image / (1e-7 + image.max())
        out.append(cv2.resize(np.float32(image), size) if size is not None else image)
    return np.float32(out)


@pytest.mark.parametrize("fused", [True, False])
def test_grad_cam_equals_the_grad_cam_package(tiny_model, fused):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform

    tiny_model.fused_attention = fused  # the package runs the plain forward; ours always the explicit path
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    targets = [2, 5]
    rows, cols = tiny_model.config.grid
    layer = tiny_model.blocks[-1].norm_1
    cam = GradCAM(model=tiny_model, target_layers=[layer],
                  reshape_transform=lambda t: vit_reshape_transform(t, height=rows, width=cols))
    package_targets = [ClassifierOutputTarget(t) for t in targets]
    theirs = cam(input_tensor=x, targets=package_targets)  # (B, H, W): scaled and resized
    activations = cam.activations_and_grads.activations[0].numpy()  # (B, D, rows, cols)
    gradients = cam.activations_and_grads.gradients[0].numpy()
    raw = np.maximum(cam.get_cam_image(x, layer, package_targets, activations, gradients), 0)  # (B, rows, cols)
    cam.activations_and_grads.release()

    ours = grad_cam(tiny_model, x, targets)
    assert ours.shape == (2, rows, cols)
    assert raw.max() > 1e-2 and (raw == 0).any()  # non-trivial, and the ReLU did something
    np.testing.assert_allclose(ours, raw, rtol=1e-5, atol=1e-6)
    # Its output: scaled, resized to H x W (cv2 bilinear), then scaled again when it aggregates the layers.
    expected = _scale_cam_image(_scale_cam_image(ours, (32, 32)))
    np.testing.assert_allclose(expected, theirs, atol=1e-5)
    for i in range(2):  # each image alone
        np.testing.assert_allclose(grad_cam(tiny_model, x[i:i + 1], targets[i], layer=tiny_model.config.depth), ours[i],
                                   rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Dropping patches

@pytest.mark.parametrize("fused", [True, False])
def test_dropping_no_patch_is_the_plain_forward_exactly(tiny_model, fused):
    tiny_model.fused_attention = fused
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(drop_patches(tiny_model, x, []), tiny_model(x))


def test_dropping_patches_equals_a_hand_built_shorter_sequence(tiny_model):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    dropped = [0, 5, 6, 15]
    keep = [i for i in range(16) if i not in dropped]
    with torch.no_grad():
        expected, _ = hand_forward(tiny_model, x, keep)
        full, _ = hand_forward(tiny_model, x)
        ours = drop_patches(tiny_model, x, dropped)
        rows = keep_patches(tiny_model, x[:1], [keep, list(range(12)), list(range(4, 16))])  # (3, K), one forward
        separate = [hand_forward(tiny_model, x[:1], k)[0] for k in (keep, list(range(12)), list(range(4, 16)))]
    assert (expected - full).abs().max() > 1e-2  # dropping them changes the answer
    assert torch.allclose(ours, expected, atol=1e-5)
    assert torch.allclose(rows, torch.cat(separate), atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Deletion and insertion

def test_curves_are_the_probabilities_of_the_shortened_sequences(tiny_model):
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    order = np.random.default_rng(0).permutation(16)
    target = 3
    deletion = deletion_curve(tiny_model, x, order, target)
    insertion = insertion_curve(tiny_model, x, order, target)
    with torch.no_grad():
        removed = [drop_patches(tiny_model, x, order[:s]).softmax(-1)[0, target].item() for s in range(17)]
        present = [drop_patches(tiny_model, x, order[s:]).softmax(-1)[0, target].item() for s in range(17)]
    np.testing.assert_array_equal(deletion.counts, np.arange(17))
    np.testing.assert_allclose(deletion.probabilities, removed, atol=1e-6)
    np.testing.assert_allclose(insertion.probabilities, present, atol=1e-6)
    assert deletion.area == pytest.approx(np.trapezoid(removed, np.arange(17) / 16), abs=1e-9)
    assert insertion.area == pytest.approx(np.trapezoid(present, np.arange(17) / 16), abs=1e-9)
    coarse = deletion_curve(tiny_model, x, order, target, steps=5)
    np.testing.assert_array_equal(coarse.counts, [0, 3, 6, 10, 13, 16])
    np.testing.assert_allclose(coarse.probabilities, np.asarray(removed)[coarse.counts], atol=1e-6)


def one_patch_model(k: int) -> ViT:
    """Two classes, a 4x4 grid of 4x4 grayscale patches. Feature 0 of a patch token is its left-minus-right contrast;
    the class token's query reads it through the key, its value carries it to feature 6 of the class token, and the
    head reads feature 6. An image whose only contrasted patch is k is class 0 because of patch k alone."""
    config = ViTConfig(image_size=16, patch_size=4, channels=1, hidden_dim=8, depth=2, heads=1, mlp_dim=8,
                       num_classes=2)
    torch.manual_seed(0)
    model = ViT(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for norm in (model.norm, *(b.norm_1 for b in model.blocks), *(b.norm_2 for b in model.blocks)):
            norm.weight.fill_(1.0)
        E = model.patch_embedding.projection.weight  # (D, 1, P, P)
        E[0, 0, :, :2], E[0, 0, :, 2:] = 1.0, -1.0  # contrast
        E[1] = -E[0]
        E[2], E[3] = 1 / 16, -1 / 16  # mean brightness, so that every token survives the LayerNorm
        model.position_embedding.normal_(std=0.05)  # a little noise in every token
        model.class_token[0, 0, 4], model.class_token[0, 0, 5] = 1.0, -1.0
        qkv = model.blocks[0].msa.qkv.weight  # rows [W_q; W_k; W_v]
        qkv[0, 4] = 5.0  # q_0 = 5 · feature 4: only the class token has it
        qkv[8 + 0, 0] = 1.0  # k_0 = contrast
        qkv[16 + 6, 0] = 1.0  # v_6 = contrast
        model.blocks[0].msa.projection.weight.copy_(torch.eye(8))
        model.head.weight[0, 6], model.head.weight[1, 6] = 3.0, -3.0  # block 2 adds nothing: all its outputs are 0
    return model


def test_relevance_finds_the_deciding_patch_and_its_deletion_curve_falls_at_once():
    k = 9
    model = one_patch_model(k)
    image = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(7)) * 0.8 + 0.2  # uniform patches
    x = F.interpolate(image, scale_factor=4, mode="nearest")  # (1, 1, 16, 16)
    row, col = divmod(k, 4)
    x[0, 0, 4 * row:4 * row + 4, 4 * col:4 * col + 2] = 1.0  # patch k: bright left half, dark right half
    x[0, 0, 4 * row:4 * row + 4, 4 * col + 2:4 * col + 4] = 0.0
    with torch.no_grad():
        assert model(x).softmax(-1)[0, 0] > 0.95
        assert drop_patches(model, x, [k]).softmax(-1)[0, 0] < 0.6  # without patch k the answer is gone

    relevance_map = relevance(model, x, 0)
    assert patch_order(relevance_map)[0] == k
    result = faithfulness(model, x, target=0, seed=1)  # seed 0 happens to put patch k first
    assert result.target == 0
    assert set(result.deletion) == {"rollout", "relevance", "grad_cam", "attention", "random"}
    np.testing.assert_allclose(result.maps["relevance"], relevance_map)
    deletion = result.deletion["relevance"].probabilities
    assert deletion[0] > 0.95 and deletion[1] < 0.6  # falls after the first removal
    assert result.insertion["relevance"].probabilities[1] > 0.95  # patch k alone gives the answer
    random_order = patch_order(result.maps["random"])
    assert random_order[0] != k
    assert result.deletion["random"].probabilities[1] > 0.9  # removing another patch first changes little
    assert result.deletion["relevance"].area < result.deletion["random"].area
    assert result.insertion["relevance"].area > result.insertion["random"].area


def test_faithfulness_on_the_trained_model_with_steps(fashion):
    x = fashion_image(fashion, "fashion_0002_trouser.png")
    result = faithfulness(fashion.model, x, steps=7)
    np.testing.assert_array_equal(result.deletion["rollout"].counts, np.arange(0, 50, 7))
    for curves in (result.deletion, result.insertion):
        for curve in curves.values():
            assert 0.0 <= curve.area <= 1.0 and curve.probabilities.shape == (8,)
    full = result.deletion["relevance"].probabilities[0]
    with torch.no_grad():
        assert full == pytest.approx(fashion.model(x).softmax(-1)[0, result.target].item(), abs=1e-6)
    assert result.insertion["relevance"].probabilities[-1] == pytest.approx(full, abs=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Another resolution (Sec. 3.2) against torchvision

def small_torchvision_vit(image_size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    tv = VisionTransformer(image_size=image_size, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                           num_classes=5)
    with torch.no_grad():
        tv.heads.head.weight.normal_(std=0.5)
        tv.encoder.pos_embedding.normal_()
    return tv.eval()


@pytest.mark.parametrize("new_size", [64, 24, 32])
def test_position_embedding_interpolation_equals_torchvision(new_size):
    tv = small_torchvision_vit(32)
    state = {name: tensor.clone() for name, tensor in tv.state_dict().items()}
    expected = interpolate_embeddings(new_size, 8, state)["encoder.pos_embedding"]
    ours = interpolate_position_embedding(tv.encoder.pos_embedding.detach(), (4, 4), new_size // 8)
    assert ours.shape == (1, (new_size // 8) ** 2 + 1, 16)
    assert torch.equal(ours, expected)


def test_a_model_at_another_resolution_predicts_as_torchvision():
    tv = small_torchvision_vit(32)
    model = from_torchvision(tv, name="small")
    resized = at_resolution(model, 64)
    assert resized.config.image_size == 64 and resized.config.grid == (8, 8)
    assert resized.position_embedding.shape == (1, 65, 16)
    assert resized.position_embedding.data_ptr() != model.position_embedding.data_ptr()  # a copy
    tv_resized = VisionTransformer(image_size=64, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                                   num_classes=5).eval()
    tv_resized.load_state_dict(interpolate_embeddings(64, 8, dict(tv.state_dict())))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        expected = tv_resized(x)
        assert expected.abs().max() > 0.1
        assert torch.allclose(resized(x), expected, atol=1e-5)
        assert at_resolution(model, (32, 48))(torch.randn(1, 3, 32, 48)).shape == (1, 5)
    with pytest.raises(ValueError, match="not divisible"):
        at_resolution(model, 60)


# ---------------------------------------------------------------------------------------------------------------
# Bad arguments

def test_bad_arguments_are_told_in_one_sentence(tiny_model):
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="permutation"):
        deletion_curve(tiny_model, x, [0, 1, 2])
    with pytest.raises(ValueError, match="Target classes"):
        relevance(tiny_model, x, 10)
    with pytest.raises(ValueError, match="one per image"):
        relevance(tiny_model, torch.randn(2, 3, 32, 32), [1, 2, 3])
    with pytest.raises(ValueError, match="layer"):
        grad_cam(tiny_model, x, layer=0)
    with pytest.raises(ValueError, match="twice"):
        keep_patches(tiny_model, x, [[1, 1]])
    with pytest.raises(ValueError, match="0..15"):
        drop_patches(tiny_model, x, [16])
    with pytest.raises(ValueError, match="steps"):
        insertion_curve(tiny_model, x, np.arange(16), steps=0)
    with pytest.raises(ValueError, match="batch of one"):
        faithfulness(tiny_model, torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        relevance(tiny_model, torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="position embedding"):
        interpolate_position_embedding(torch.randn(1, 10, 4), (4, 4), (8, 8))
