"""The attention query in a real browser (headless Debian Chromium through Playwright): a tiny timm ViT with two
registers saved to a folder that EXPLORER_MODELS names, picked in the menu; in step 2 the query radio offers CLS, REG1
and REG2, and choosing REG2 by keyboard redraws the heads' maps (each head's row of A for REG2, computed here from the
same timm model) with "query: REG2" in the title. Screenshots go to test-artifacts/query/.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from app_server import REPO, AppServer, open_browser
from hub_models import randomise, save_timm, timm  # noqa: F401 (skips without timm)
from explorer import load
from explorer.images import open_image

pytestmark = pytest.mark.browser

SHOTS = REPO / "test-artifacts" / "query"
PHOTO = REPO / "assets" / "cat_chelsea.jpg"
FOLDER = "vit_two_registers"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The timm model, saved to <EXPLORER_MODELS>/vit_two_registers, and EXPLORER_MODELS."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    model = randomise(timm.create_model("vit_base_patch16_224", pretrained=False, img_size=32, patch_size=8,
                                        embed_dim=32, depth=2, num_heads=4, reg_tokens=2, num_classes=3), seed=2)
    for parameter in (model.cls_token, model.reg_token):  # tokens far apart, so that their rows of A differ
        parameter.data.normal_(std=2.0)
    save_timm(model, root / FOLDER, label_names=["cat", "rocket", "astronaut"])
    return model, root


@pytest.fixture(scope="module")
def page(reference, tmp_path_factory):
    app = AppServer(tmp_path_factory.mktemp("app"), extra_env={"EXPLORER_MODELS": str(reference[1])}).start()
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with open_browser(app.url) as session:
            yield session.page
    finally:
        app.stop()


def heads_plot(page) -> dict:
    """eq2.heads as drawn: its title and head 1's tile of the mosaic (the first heatmap's z)."""
    return page.evaluate("""() => { const e = document.querySelector('#view-eq2-heads .js-plotly-plot');
        const heat = e._fullData.find(t => t.type === 'heatmap');
        return {title: e.layout.title.text.replace(/<br>/g, ' '), z: Array.from(heat._z || heat.z, row => Array.from(row))};
    }""")


def test_reg2_chosen_as_the_query_redraws_the_heads(page, reference):
    model = reference[0]
    page.click("#model input")
    page.click(f"li.item[aria-label^='{FOLDER}']")
    page.wait_for_function(f"() => document.querySelector('#model-card').innerText.includes('{FOLDER}')")
    page.set_input_files("#upload input[type=file]", str(PHOTO))
    page.wait_for_function("() => { const i = document.querySelector('#picker img'); return i && i.complete && "
                           "i.naturalWidth > 0; }")
    page.click("#tab-2-button")
    page.wait_for_function("() => { const e = document.querySelector('#view-eq2-heads .js-plotly-plot');"
                           " return e && e.data && e.layout.title.text.includes('query: CLS'); }")
    assert [page.get_attribute(f"#query-label input >> nth={i}", "value") for i in range(3)] == ["CLS", "REG1", "REG2"]
    before = heads_plot(page)
    page.focus("#query-label input[value=CLS]")  # the radio by keyboard: the arrows move the choice
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.querySelector('#view-eq2-heads .js-plotly-plot').layout.title.text"
                           ".includes('query: REG2')")
    after = heads_plot(page)
    assert page.is_checked("#query-label input[value=REG2]")
    assert "attention of REG2 to every patch" in after["title"]
    # Head 1's map is REG2's row of A in layer 1 over the patches, as timm's own forward computes it (its explicit
    # attention path, the softmax caught on its way into attn_drop), on the input as the folder's preprocessing gives it.
    pre = load(reference[1] / FOLDER).preprocessing
    x = pre.normalise(pre.crop(open_image(PHOTO).image)[0])  # (1, 3, 32, 32)
    attention = model.blocks[0].attn
    attention.fused_attn, caught = False, []
    hook = attention.attn_drop.register_forward_hook(lambda module, inputs, output: caught.append(inputs[0]))
    with torch.no_grad():
        model(x)
    hook.remove()
    expected = caught[0][0, 0, 2, 3:].reshape(4, 4).double().numpy()  # head 1, REG2's row (CLS, REG1, REG2 first)
    np.testing.assert_allclose(np.asarray(after["z"], dtype=np.float64)[:4, :4], expected, atol=1e-4)
    assert not np.allclose(np.asarray(before["z"], dtype=np.float64)[:4, :4], expected, atol=1e-4)
    page.locator("#tab-2").screenshot(path=str(SHOTS / "reg2_query.png"))
