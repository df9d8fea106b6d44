"""The CUDA path: the same model on the GPU gives what it gives on the CPU and what torchvision gives, traced or not;
the app's /predict and every step on CUDA; a survey over two GPUs (nccl). Marked `cuda`, skipped without a GPU;
benchmarks/gpu_check.sh runs them where one is lent (docs/hosting.md).
"""
from __future__ import annotations

import json

import pytest
import torch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="No CUDA device: the CUDA path is not run.")]

TOLERANCE = 1e-4  # max |Δlogits| between CPU and CUDA (float32, TF32 off)


@pytest.fixture(autouse=True)
def exact_float32():
    """TF32 off (cuDNN's convolution, the patch embedding, uses it by default): CUDA's float32 compared with the
    CPU's."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def perturbed_b16():
    """ViT-B/16 at random init with every parameter perturbed (a zero-initialised head would make all logits 0)."""
    from explorer import CONFIGS, ViT

    torch.manual_seed(0)
    model = ViT(CONFIGS["ViT-B/16"]).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    return model


def test_b16_logits_on_cuda_equal_the_cpus():
    model = perturbed_b16()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        on_cpu = model(x)
        on_cuda = model.to("cuda")(x.to("cuda")).cpu()
    assert on_cpu.abs().max() > 1e-2  # logits that could differ
    assert (on_cpu - on_cuda).abs().max().item() <= TOLERANCE


def test_plain_and_traced_forward_agree_on_cuda():
    from explorer.trace import trace

    model = perturbed_b16().to("cuda")
    x = torch.randn(1, 3, 224, 224, device="cuda")
    with torch.no_grad():
        plain = model(x)[0]
    for attention in ("on_demand", "full"):
        traced = trace(model, x, attention=attention).logits
        assert traced.device.type == "cuda"
        assert (plain - traced).abs().max().item() <= 1e-5, attention


def test_torchvision_and_ours_agree_on_cuda():
    import torchvision

    from explorer.families.torchvision import from_torchvision

    torch.manual_seed(0)
    reference = torchvision.models.vit_b_16(weights=None).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    ours = from_torchvision(reference).to("cuda").eval()
    reference = reference.to("cuda")
    x = torch.randn(2, 3, 224, 224, device="cuda")
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max().item() <= TOLERANCE


def test_predict_and_every_step_on_cuda(tmp_path):
    """The app's server on CUDA: /predict's answer equals the CPU server's, and every view of every step draws."""
    from app_server import make_standin_checkpoint

    from explorer.app import views
    from explorer.app.server import Server
    from explorer.app.text import STEPS

    make_standin_checkpoint(tmp_path)
    image = "assets/cat_chelsea.jpg"
    on_cpu, on_cuda = (Server(checkpoint_dir=tmp_path, device=device) for device in ("cpu", "cuda"))
    label = on_cuda.registry.fallback_label()
    answers = [server.predict(image, label, 5) for server in (on_cpu, on_cuda)]
    assert [r["label"] for r in answers[0]["top_k"]] == [r["label"] for r in answers[1]["top_k"]]
    assert max(abs(a["probability"] - b["probability"])
               for a, b in zip(answers[0]["top_k"], answers[1]["top_k"])) <= 1e-5
    entry = on_cuda.analyse(image, label)
    assert entry.key[2] == "cuda"
    for step in range(len(STEPS)):
        names = views.step_views(step)
        drawn = views.render_views(entry, names, views.Options())
        assert len(drawn) == len(names) and all(value is not None for value in drawn), step
    json.dumps(answers[1])  # CPU values, JSON-ready


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="One GPU: the two-GPU survey (nccl) is not run.")
def test_survey_over_two_gpus_with_nccl_equals_one(tmp_path):
    from survey_data import SHIPPED, json_difference, run_module, write_fashion_idx

    data = write_fashion_idx(tmp_path / "fashion", n_test=64)
    common = ["--model", str(SHIPPED), "--data", "fashion-mnist", "--data-idx", str(data), "-n", "64",
              "--faithfulness", "6", "--batch-size", "16", "--device", "cuda"]
    for processes in (1, 2):
        result = run_module("explorer.survey", [*common, "--out", str(tmp_path / f"p{processes}")], processes)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    one, two = (json.loads((tmp_path / f"p{p}" / "survey.json").read_text()) for p in (1, 2))
    assert json_difference(one, two) <= 1e-4
    assert json.loads((tmp_path / "p2" / "run.json").read_text())["backend"] == "nccl"
