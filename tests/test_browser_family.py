"""The ViT family as a user meets it, in a real browser (headless Debian Chromium through Playwright): one model of
each family (DeiT distilled, DeiT III, CLIP towers, MAE-style mean pooling, DINOv2 with registers, a mean-pooled
backbone without a class token), tiny and with random weights, saved to a folder as timm's and transformers'
save_pretrained write it, put in EXPLORER_MODELS, picked in the menu, and every step opened. Each step must be drawn
with no error; Eq. 1 must count the model's own tokens (e.g. T = 1 + 4 + 16); the card must say what the model is.
Screenshots go to test-artifacts/family/.
"""
from __future__ import annotations

import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

from app_server import REPO, AppServer, open_browser  # noqa: E402
from hub_models import randomise, save_timm  # noqa: E402

pytestmark = pytest.mark.browser

SHOTS = REPO / "test-artifacts" / "family"
PHOTO = REPO / "assets" / "cat_chelsea.jpg"
SMALL = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4)  # N = 16 patches
HF_BASE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)

# folder -> (how to build and save it, how Eq. 1 counts the T rows: the prefix tokens + N = 16 patches)
TIMM = {
    "deit-distilled": ("deit_tiny_distilled_patch16_224", dict(num_classes=5), "T = 1 + 1 + 16 = 18"),
    "deit3": ("deit3_small_patch16_224", dict(num_classes=5), "T = 1 + 16 = 17"),
    "clip-quickgelu": ("vit_base_patch16_clip_quickgelu_224", dict(num_classes=6), "T = N + 1 = 17"),
    "mae-mean-fc-norm": ("vit_base_patch16_224", dict(num_classes=4, global_pool="avg"), "T = N + 1 = 17"),
    "dinov2-registers": ("vit_small_patch14_reg4_dinov2", dict(num_classes=0), "T = 1 + 4 + 16 = 21"),
    "mean-registers-no-class-token": ("vit_base_patch16_reg4_gap_256", dict(num_classes=0), "T = 4 + 16 = 20"),
}
HF = {
    "hf-deit-teacher": ("DeiTForImageClassificationWithTeacher", "DeiTConfig", dict(intermediate_size=64, num_labels=3),
                        "T = 1 + 1 + 16 = 18"),
    "hf-dinov2-registers": ("Dinov2WithRegistersModel", "Dinov2WithRegistersConfig",
                            dict(mlp_ratio=2, num_register_tokens=3), "T = 1 + 3 + 16 = 20"),
    "hf-clip-vision": ("CLIPVisionModel", "CLIPVisionConfig", dict(intermediate_size=64), "T = N + 1 = 17"),
}
FAMILIES = list(TIMM) + list(HF)
BACKBONES = {"dinov2-registers", "mean-registers-no-class-token", "hf-dinov2-registers", "hf-clip-vision"}


def save_family(root) -> None:
    import torch

    for name, (architecture, arguments, _) in TIMM.items():
        torch.manual_seed(0)
        save_timm(randomise(timm.create_model(architecture, pretrained=False, **{**SMALL, **arguments})), root / name)
    for name, (model_class, config_class, arguments, _) in HF.items():
        torch.manual_seed(0)
        config = getattr(transformers, config_class)(**HF_BASE, **arguments)
        randomise(getattr(transformers, model_class)(config)).save_pretrained(root / name)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("family")
    save_family(root / "models")
    app = AppServer(root, extra_env={"EXPLORER_MODELS": str(root / "models")}).start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def session(server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with open_browser(server.url) as browser_session:
        browser_session.upload(PHOTO)
        yield browser_session


TOASTS = "() => Array.from(document.querySelectorAll('.toast-body')).map(e => e.innerText)"


def settle(page) -> None:
    """Until nothing is pending, every visible chart drawn and every visible picture loaded."""
    page.wait_for_function("() => document.querySelectorAll('.pending, .progress-text').length === 0")
    page.wait_for_function("() => Array.from(document.querySelectorAll('.js-plotly-plot')).filter(e => e.offsetParent"
                           " !== null).every(e => e.data && e.data.length)")
    page.wait_for_function("() => Array.from(document.querySelectorAll('img')).filter(i => i.offsetParent !== null)"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    time.sleep(0.3)


def no_errors(page, where: str) -> None:
    toasts = page.evaluate(TOASTS)
    assert not toasts, f"{where}: {toasts}"
    errors = page.evaluate("() => Array.from(document.querySelectorAll('.error')).filter(e => e.offsetParent !== null)"
                           ".map(e => e.innerText)")
    assert not errors, f"{where}: {errors}"


def contains(page, step: int, text: str, why: str) -> None:
    """Until step `step`'s text contains `text` (its words are drawn after its charts); fails with `why`."""
    try:
        page.wait_for_function(f"() => document.querySelector('#tab-{step}').innerText.replace(/\\n/g, ' ')"
                               f".includes({text!r})", timeout=30_000)
    except Exception:
        pytest.fail(f"{why}: {page.inner_text(f'#tab-{step}')[:600]}")


def pick(page, folder: str) -> None:
    page.click("#model input")
    page.click(f"li.item[aria-label^='{folder}']")
    page.wait_for_function(f"() => document.querySelector('#model-card').innerText.includes({folder!r})",
                           timeout=120_000)


@pytest.mark.parametrize("folder", FAMILIES)
def test_each_family_picked_in_the_menu_and_every_step_opened(session, folder):
    page = session.page
    pick(page, folder)
    settle(page)
    no_errors(page, f"{folder} chosen")
    status = page.inner_text("#status")
    assert "⚠️" not in status, status
    tokens = (TIMM.get(folder) or HF[folder])[-1]
    for step in range(6):
        page.click(f"#tab-{step}-button")
        page.wait_for_function(f"() => document.querySelector('#tab-{step}-button').getAttribute('aria-selected')"
                               " === 'true'")
        time.sleep(0.5)  # the step's event has reached the page before "nothing pending" means drawn
        settle(page)
        no_errors(page, f"{folder}, step {step}")
        if step == 1:  # the step's words as the model's own: its prefix tokens counted
            contains(page, step, tokens, f"{folder}: Eq. 1 does not count {tokens}")
        if step == 5 and folder in BACKBONES:
            contains(page, step, "classifier", f"{folder}: step 5 does not say it needs a classifier")
        page.screenshot(path=str(SHOTS / f"{folder}_{step}.png"), full_page=True)
    session.assert_clean()


def test_the_page_stayed_clean(session):
    session.assert_clean()
