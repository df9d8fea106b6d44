"""Changing the model and comparing, in a real browser (headless Debian Chromium through Playwright): click a head on
Eq. 2's switchboard and see the strip and a changed prediction (the one explorer.interventions.ablate_heads gives),
click it again and see it restored; the same by keyboard; a second image compared in every step; patching; what each
head is worth. axe-core finds nothing critical or serious on the new parts. Screenshots go to
test-artifacts/interact/.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from app_server import REPO, AppServer, open_browser, standin_model, standin_preprocessing
from explorer import analysis
from explorer.app.views import compare
from explorer.images import open_image
from explorer.render.interventions import GAP, head_grid_cell

pytestmark = pytest.mark.browser

SHOTS = REPO / "test-artifacts" / "interact"
AXE = REPO / "tests" / "node_modules" / "axe-core" / "axe.min.js"
BOOT = REPO / "assets" / "fashion_0000_ankle_boot.png"
TROUSER = REPO / "assets" / "fashion_0002_trouser.png"
LAYERS, HEADS = 6, 4  # the stand-in, ViT-Fashion/4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app = AppServer(tmp_path_factory.mktemp("interact")).start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def session(server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with open_browser(server.url) as browser_session:
        yield browser_session


@pytest.fixture(scope="module")
def boot_input():
    pre = standin_preprocessing()
    return pre.normalise(pre.crop(open_image(BOOT).image)[0])  # (1, 1, 28, 28)


def shoot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def shoot_part(page, selector: str, name: str) -> None:
    """A screenshot of one part of the page (a new view), beside the page's."""
    page.locator(selector).screenshot(path=str(SHOTS / f"{name}.png"))


def figure(page, selector: str) -> dict:
    """The plotly figure drawn in `selector`: its title and each trace's name and x values."""
    return page.evaluate(f"""() => {{ const e = document.querySelector('{selector} .js-plotly-plot');
        if (!e || !e.data) return null;
        return {{title: (e.layout.title && e.layout.title.text) || '', traces: e._fullData.map(t => ({{name: t.name || '',
                 x: Array.from(t.x || [])}}))}}; }}""")


def wait_figure(page, selector: str, text: str) -> dict:
    page.wait_for_function(f"""() => {{ const e = document.querySelector('{selector} .js-plotly-plot');
        return e && e.data && e.data.length && e.layout.title.text.replace(/<br>/g, ' ').includes({json.dumps(text)}); }}""")
    return figure(page, selector)


def click_head(page, layer: int, head: int) -> None:
    """A mouse click at the centre of head (l, j)'s cell of the switchboard, as shown on screen."""
    img = "#view-eq2-switchboard img"
    # The page at rest first: a click on a switchboard that a tab's event is about to replace would be lost.
    page.wait_for_function("() => document.querySelectorAll('.pending').length === 0")
    page.wait_for_timeout(300)
    page.wait_for_function(f"() => {{ const i = document.querySelector('{img}'); return i && i.complete && i.naturalWidth > 0"
                           " && i.getBoundingClientRect().width > 0; }")
    page.locator(img).scroll_into_view_if_needed()
    x, y, width, height, natural_w, natural_h = page.eval_on_selector(
        img, "e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height, e.naturalWidth, e.naturalHeight]; }")
    scale = min(width / natural_w, height / natural_h, 1.0)
    left, top = x + (width - natural_w * scale) / 2, y + (height - natural_h * scale) / 2
    pitch = (head_grid_cell(HEADS) + GAP) * scale
    page.mouse.click(left + (head + 0.5) * pitch, top + (layer - 1 + 0.5) * pitch)


def strip(page) -> str:
    return page.inner_text("#heads-off")


def test_upload_and_open_eq2(session):
    page = session.page
    session.upload(BOOT)
    page.click("#tab-2-button")
    page.wait_for_function("() => { const i = document.querySelector('#view-eq2-switchboard img');"
                           " return i && i.complete && i.naturalWidth > 0 && i.alt.includes('every head on'); }")
    assert f"{LAYERS} × {HEADS} heads" in page.get_attribute("#view-eq2-switchboard img", "alt")
    wait_figure(page, "#view-eq2-heads-off-prediction", "every head on")
    assert strip(page) == "Every head is on."
    assert not page.is_visible("#heads-all-on")
    shoot(page, "01_eq2_switchboard")


def test_clicking_a_head_switches_it_off_and_again_on(session, boot_input):
    page = session.page
    model = standin_model()
    importance = analysis.head_importance(model, boot_input)
    layer, head = np.unravel_index(int(np.argmax(np.abs(importance.exact))), importance.exact.shape)
    layer, head = int(layer) + 1, int(head)
    before = figure(page, "#view-eq2-heads-off-prediction")
    click_head(page, layer, head)
    page.wait_for_function(f"() => document.querySelector('#heads-off').innerText.includes('layer {layer} head {head + 1}')")
    assert strip(page).startswith("Heads off (1):")
    assert page.is_visible("#heads-all-on")
    after = wait_figure(page, "#view-eq2-heads-off-prediction", "1 head off")
    with torch.no_grad():
        expected = analysis.ablate_heads(model, boot_input, [(layer, head)]).softmax(-1)[0].numpy()  # (K,)
    off = next(t for t in after["traces"] if t["name"] == "1 head off")
    on = next(t for t in after["traces"] if t["name"] == "every head on")
    assert np.isclose(max(off["x"]), expected.max(), atol=1e-5)
    assert not np.allclose(off["x"], on["x"], atol=1e-4)  # a changed prediction
    page.wait_for_function("() => document.querySelector('#view-eq2-switchboard img').alt.includes('switched off')")
    shoot(page, "02_head_off")
    shoot_part(page, "#view-eq2-switchboard", "02_switchboard_part")
    shoot_part(page, "#view-eq2-heads-off-prediction", "02_prediction_part")
    shoot_part(page, "#heads-off", "02_strip_part")
    # Step 4 draws the prediction of the run with that head off.
    page.click("#tab-4-button")
    page.wait_for_function("() => { const e = document.querySelector('#tab-4 .js-plotly-plot'); return e && e.data && e.data.length; }")
    top = page.evaluate("() => Array.from(document.querySelector('#tab-4 .js-plotly-plot')._fullData[0].x)")
    assert np.isclose(max(top), expected.max(), atol=1e-5)
    page.click("#tab-2-button")
    wait_figure(page, "#view-eq2-heads-off-prediction", "1 head off")
    page.wait_for_function("() => { const i = document.querySelector('#view-eq2-switchboard img'); return i && i.complete && i.naturalWidth > 0; }")
    click_head(page, layer, head)
    page.wait_for_function("() => document.querySelector('#heads-off').innerText === 'Every head is on.'")
    restored = wait_figure(page, "#view-eq2-heads-off-prediction", "every head on")
    assert np.allclose(restored["traces"][0]["x"], before["traces"][0]["x"], atol=1e-6)
    shoot(page, "03_head_on_again")


def test_a_head_switched_off_by_keyboard_and_all_on_again(session):
    page = session.page
    page.focus("#view-eq2-switchboard button")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowRight")
    assert "layer 2, head 2" in page.inner_text("#view-eq2-switchboard")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#heads-off').innerText.includes('layer 2 head 2')")
    page.click("#heads-all-on")
    page.wait_for_function("() => document.querySelector('#heads-off').innerText === 'Every head is on.'")
    wait_figure(page, "#view-eq2-heads-off-prediction", "every head on")


def test_a_second_image_is_compared_in_every_step(session):
    page = session.page
    page.click("#compare-inputs button")  # the accordion opens
    page.set_input_files("#compare-upload input[type=file]", str(TROUSER))
    for step in range(6):
        page.click(f"#tab-{step}-button")
        page.wait_for_function(f"() => {{ const e = document.querySelector('#compare-{step}-text');"
                               " return e && e.offsetParent && e.innerText.includes('two images under the same model'); }")
        twins = [f"#compare-{step}-b{i}" for i in range(1, len(compare.TWINS[step]) + 1)]
        page.wait_for_function(f"""() => {json.dumps(twins)}.every(s => {{
            const e = document.querySelector(s + ' .js-plotly-plot'); return e && e.data && e.data.length && e.offsetParent; }})""")
        if step == 0:
            page.wait_for_function("() => { const i = document.querySelector('#compare-0-picture img');"
                                   " return i && i.complete && i.naturalWidth > 0 && i.offsetParent && i.alt.includes('side by side'); }")
        if step in (2, 4):
            title = "Mean attention distance per head, A and B" if step == 2 else "Prediction: A and B"
            shown = wait_figure(page, f"#compare-{step}-figure", title)
            assert len(shown["traces"]) >= 2
        page.locator(f"#compare-{step}").scroll_into_view_if_needed()
        shoot(page, f"04_compare_step_{step}")
        shoot_part(page, f"#compare-{step}", f"04_compare_step_{step}_part")


def test_patching_from_the_second_image(session):
    page = session.page
    page.click("#tab-4-button")
    page.click("#patching button")
    page.click("#patch-run")
    shown = wait_figure(page, "#patch-result", "from B")
    assert len(shown["traces"]) == 2
    shoot(page, "05_patching")
    shoot_part(page, "#patching", "05_patching_part")


def test_what_each_head_is_worth(session):
    page = session.page
    page.click("#tab-5-button")
    page.click("#head-importance")
    wait_figure(page, "#view-why-head-importance", "What each head is worth for")
    page.locator("#view-why-head-importance").scroll_into_view_if_needed()
    shoot(page, "06_head_importance")
    shoot_part(page, "#view-why-head-importance", "06_head_importance_part")


def test_axe_finds_nothing_critical_or_serious_on_the_new_parts(session):
    if not AXE.is_file():
        pytest.skip("axe-core is not installed: npm install --prefix tests axe-core (.ci/run does)")
    page = session.page
    page.click("#tab-2-button")
    click_head(page, 1, 0)
    page.wait_for_function("() => document.querySelector('#heads-off').innerText.includes('layer 1 head 1')")
    page.wait_for_function("() => document.querySelectorAll('.pending').length === 0")
    if not page.evaluate("() => !!window.axe"):
        page.add_script_tag(content=AXE.read_text())
    parts = ["#heads-off", "#heads-all-on", "#compare-inputs", "#compare-2", "#view-eq2-switchboard",
             "#view-eq2-heads-off-prediction"]
    found = page.evaluate("""async parts => (await axe.run({include: parts.map(p => [p])},
        {resultTypes: ['violations']})).violations.filter(v => v.impact === 'critical' || v.impact === 'serious')
        .map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))""", parts)
    assert not found, found


def test_the_page_stayed_clean(session):
    session.assert_clean()
