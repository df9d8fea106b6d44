"""A backbone without a classifier in a real browser (headless Debian Chromium through Playwright): a tiny random DINOv2
with 4 registers saved by timm in EXPLORER_MODELS, picked in the menu; an upload; step 4 shows the principal components
of the patch features and a patch's similarity map, which a patch clicked in the picker changes; step 5 says in one
sentence that its class explanations need a classifier. No console error or page exception on the way. Screenshots go
to test-artifacts/backbone/.
"""
from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from app_server import REPO, AppServer, open_browser  # noqa: E402
from explorer.app.text import NEEDS_CLASSIFIER  # noqa: E402

pytestmark = pytest.mark.browser

SHOTS = REPO / "test-artifacts" / "backbone"
PHOTO = REPO / "assets" / "cat_chelsea.jpg"
LABEL = "dinov2_reg4"
ROWS = COLS = 4  # 56 / 14


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    timm = pytest.importorskip("timm")
    from hub_models import randomise, save_timm

    root = tmp_path_factory.mktemp("backbone")
    torch.manual_seed(0)
    model = randomise(timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, num_classes=0, img_size=56,
                                        patch_size=14, embed_dim=32, depth=2, num_heads=4))
    save_timm(model, root / "models" / LABEL)
    app = AppServer(root, extra_env={"EXPLORER_MODELS": str(root / "models")}).start()
    yield app
    app.stop()


def shoot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def drawn(page, view: str) -> dict:
    """The figure of view `view` once drawn: its title, and its traces' text and heat-map values."""
    selector = f"#view-{view} .js-plotly-plot"
    page.wait_for_function(f"() => {{ const e = document.querySelector('{selector}');"
                           " return e && e.data && e.data.length && e.offsetParent !== null; }")
    return page.evaluate(f"""() => {{ const e = document.querySelector('{selector}');
        return {{title: (e.layout.title.text || '').replace(/<br>/g, ' '),
                 text: e.data.map(t => [].concat(t.text || []).join(' ')).join(' ').replace(/<br>/g, ' '),
                 z: e._fullData.filter(t => t.type === 'heatmap' && t.zmin === -1)
                       .map(t => JSON.stringify(Array.from(t.z, row => Array.from(row))))}}; }}""")


def click_patch(page, row: int, col: int) -> None:
    """A click at the centre of patch (row, col) of the picker, as shown on screen."""
    page.locator("#picker img").scroll_into_view_if_needed()
    x, y, width, height, natural_w, natural_h = page.eval_on_selector(
        "#picker img", "e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height, "
                       "e.naturalWidth, e.naturalHeight]; }")
    scale = min(width / natural_w, height / natural_h, 1.0)
    shown_w, shown_h = natural_w * scale, natural_h * scale
    left, top = x + (width - shown_w) / 2, y + (height - shown_h) / 2
    page.mouse.click(left + shown_w * (col + 0.5) / COLS, top + shown_h * (row + 0.5) / ROWS)


def test_a_dinov2_backbone_picked_in_the_menu_shows_its_features(server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with open_browser(server.url) as session:
        page = session.page
        page.click("#model input")
        page.click(f"li.item[aria-label^='{LABEL}']")
        page.wait_for_function(f"() => document.querySelector('#model-card').innerText.includes('Model chosen: {LABEL}')",
                               timeout=60_000)
        assert "a backbone: features, no classes" in page.inner_text("#model-card")
        page.set_input_files("#upload input[type=file]", str(PHOTO))
        page.wait_for_function("() => document.querySelector('#model-card').innerText.includes('Model in use: "
                               f"{LABEL}')", timeout=60_000)
        page.wait_for_function("() => { const i = document.querySelector('#picker img');"
                               " return i && i.complete && i.naturalWidth > 0; }")
        assert "a backbone with no classifier" in page.inner_text("#model-card")
        # Step 4, in its place in the stepper: the features instead of classes.
        page.click("#tab-4-button")
        pca = drawn(page, "eq4-pca")
        assert "principal components 1-3" in pca["title"]
        centre = drawn(page, "eq4-similarity")
        assert "patch 10" in centre["title"] and centre["z"]  # nothing picked: the centre of the 4 x 4 grid
        assert "No classes: this model is a backbone" in drawn(page, "eq4-top-k")["text"]
        assert "There is no logit lens" in drawn(page, "eq4-lens")["text"]
        assert "\\text{no classifier" in page.inner_text("#tab-4") or "no classifier" in page.inner_text("#tab-4")
        shoot(page, "01_step4_features")
        click_patch(page, 0, 3)
        page.wait_for_function("() => document.querySelector('#view-eq4-similarity .js-plotly-plot')"
                               ".layout.title.text.replace(/<br>/g, ' ').includes('patch 3')")
        picked = drawn(page, "eq4-similarity")
        assert picked["z"] and picked["z"] != centre["z"]  # the picked patch's own similarities
        assert json.loads(picked["z"][0])[0][3] == pytest.approx(1.0, abs=1e-3)  # a patch is itself
        page.locator("#view-eq4-similarity").scroll_into_view_if_needed()
        shoot(page, "02_step4_patch_3")
        # Step 5: the class explanations say in one sentence that they need a classifier.
        page.click("#tab-5-button")
        relevance = drawn(page, "why-relevance")
        assert NEEDS_CLASSIFIER in relevance["text"].replace("  ", " ")
        page.wait_for_function(f"() => document.querySelector('#tab-5').innerText.includes({json.dumps(NEEDS_CLASSIFIER)})")
        shoot(page, "03_step5_needs_a_classifier")
        session.assert_clean()
