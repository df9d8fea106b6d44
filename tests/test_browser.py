"""A tour of the app in a real browser (headless Debian Chromium through Playwright), as a person would take it.

One server and one page for the whole module; the tests run in file order and each is one step of the tour:
open the page, upload a photo, walk Input / Eq. 1 / Eq. 2 / Eq. 3 / Eq. 4, change layer and head, click a patch,
read the prediction, switch to an untrained Table 1 model (ViT-B/32), upload another photo. Each step asserts what
is visible (plots drawn in the visible tab, images loaded, LaTeX rendered, texts), and that controls redraw without
running the model (the server's model-run counter from /stats). Any console error, uncaught exception, dialog or
request that leaves 127.0.0.1 fails the last test (requests off the machine are also aborted). Screenshots of every
step go to test-artifacts/browser/.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from app_server import REPO, STANDIN_LABEL, AppServer, open_browser, reference_probabilities
from explorer.app import views
from explorer.data import FASHION_MNIST_CLASSES

pytestmark = pytest.mark.browser

SHOTS = REPO / "test-artifacts" / "browser"
PHOTO = REPO / "assets" / "cat_chelsea.jpg"  # 448 x 298
SECOND_PHOTO = REPO / "assets" / "coffee.jpg"
UNTRAINED = "ViT-B/32 · random init"


def plots_in(step: int) -> int:
    """How many figures step `step` shows (its views of kind "plot", as the registry declares them)."""
    return sum(1 for name in views.step_views(step) if views.VIEWS[name].kind == "plot")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app = AppServer(tmp_path_factory.mktemp("browser")).start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def stats(server, tmp_path_factory):
    """stats() -> the server's counters (the /stats endpoint), read by a separate API client."""
    from gradio_client import Client

    client = Client(server.url, verbose=False, download_files=str(tmp_path_factory.mktemp("probe")))
    yield lambda: client.predict(api_name="/stats")
    client.close()


@pytest.fixture(scope="module")
def session(server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with open_browser(server.url) as browser_session:
        joins = browser_session.joins = []  # (time, request body) of every queue/join: which events ran
        browser_session.page.on("request", lambda request: joins.append((time.monotonic(), request.post_data or ""))
                                if "/queue/join" in request.url else None)
        yield browser_session


def shoot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def visible_plots(page, tab: int) -> list[dict]:
    """The plotly figures drawn in tab `tab`: title, trace count, size, visible."""
    return page.evaluate(f"""() => Array.from(document.querySelectorAll('#tab-{tab} .js-plotly-plot')).map(e => {{
        const r = e.getBoundingClientRect();
        return {{title: (e.layout && e.layout.title && e.layout.title.text) || '', traces: (e.data || []).length,
                 width: r.width, height: r.height, visible: e.offsetParent !== null}};
    }})""")


def open_tab(page, tab: int) -> list[dict]:
    page.click(f"#tab-{tab}-button")
    expected = plots_in(tab)
    page.wait_for_function(f"() => Array.from(document.querySelectorAll('#tab-{tab} .js-plotly-plot'))"
                           f".filter(e => e.data && e.data.length && e.offsetParent !== null).length >= {expected}")
    plots = visible_plots(page, tab)
    assert len(plots) == expected, plots
    for plot in plots:
        assert plot["visible"] and plot["traces"] > 0 and plot["width"] > 100 and plot["height"] > 100, plot
    return plots


def plot_titles(page, tab: int) -> list[str]:
    return [p["title"] for p in visible_plots(page, tab)]


def heads_data(page) -> str:
    """The heatmap values of Eq. 2's per-head attention figure (the first figure of step 2), as JSON."""
    return page.evaluate("() => JSON.stringify(document.querySelectorAll('#tab-2 .js-plotly-plot')[0].data"
                         ".filter(t => t.type === 'heatmap').map(t => t.z))")


def katex_count(page, tab: int) -> int:
    return page.evaluate(f"() => document.querySelectorAll('#tab-{tab} .katex').length")


# ---------------------------------------------------------------------------------------------------------------
# The tour

def test_page_opens_without_a_warning(session, stats):
    page = session.page
    assert page.title() == "ViT Explorer"
    assert "model runs:" in page.inner_text("#model-runs")
    assert STANDIN_LABEL in page.input_value("#model input")
    # Nothing has been uploaded: the page must not greet a visitor with a warning (the tab-select event fired at
    # load has no image to draw; it should say nothing).
    deadline = time.monotonic() + 5
    toasts = []
    while time.monotonic() < deadline and not toasts:
        toasts = page.evaluate("() => Array.from(document.querySelectorAll('.toast-body')).map(e => e.innerText)")
        time.sleep(0.25)
    shoot(page, "00_open")
    assert not toasts, f"a fresh page shows: {toasts}"


def test_upload_runs_the_model_once_and_shows_the_input(session, stats):
    page = session.page
    before = stats()["model_runs"]
    page.set_input_files("#upload input[type=file]", str(PHOTO))
    page.wait_for_function("() => Array.from(document.querySelectorAll('#tab-0 p')).some(e => e.innerText.includes('Uploaded 448×298'))")
    page.wait_for_function("() => { const imgs = Array.from(document.querySelectorAll('#tab-0 img'));"
                           " return imgs.length >= 2 && imgs.every(i => i.complete && i.naturalWidth > 0); }")
    page.wait_for_function("() => { const i = document.querySelector('#picker img'); return i && i.complete && i.naturalWidth > 0; }")
    assert stats()["model_runs"] == before + 1
    assert page.inner_text("#model-runs").strip() == f"model runs: {before + 1}"
    assert katex_count(page, 0) >= 1  # Eq. for x and x̂ rendered by KaTeX, not left as $$ source
    text = page.inner_text("#tab-0")
    assert "$$" not in text and "28 × 28" in text
    sizes = page.evaluate("() => Array.from(document.querySelectorAll('#tab-0 img')).map(i => [i.naturalWidth, i.naturalHeight])")
    assert [448, 298] in sizes, sizes  # the upright original, at its own size
    assert page.inner_text("#status").strip() == ""
    shoot(page, "01_input")


def test_eq1_shows_its_figures_without_running_the_model(session, stats):
    page = session.page
    before = stats()["model_runs"]
    plots = open_tab(page, 1)
    assert katex_count(page, 1) >= 1 and "N = HW/P²" in page.inner_text("#tab-1")
    assert any("patch" in p["title"].lower() for p in plots), [p["title"] for p in plots]
    assert stats()["model_runs"] == before
    shoot(page, "02_eq1")


def test_eq2_layer_and_head_redraw_without_running_the_model(session, stats):
    page = session.page
    before = stats()["model_runs"]
    open_tab(page, 2)
    titles = plot_titles(page, 2)
    assert titles[0].startswith("layer 1:") and "layer 1, mean over the 4 heads" in titles[1], titles
    assert page.get_attribute("#layer input[type=range]", "max") == "6"  # L = 6 for the stand-in model
    # the slider, by keyboard, as a person would: layer 1 -> 2
    charts = page.evaluate_handle("() => Array.from(document.querySelectorAll('#tab-2 .js-plotly-plot'))")
    page.focus("#layer input[type=range]")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.querySelectorAll('#tab-2 .js-plotly-plot')[0].layout.title.text.startsWith('layer 2:')")
    # Redrawn in place (explorer.app.plot.PlotView): the same chart elements, still on the page, now layer 2.
    assert page.evaluate("old => old.every((e, i) => e.isConnected && e === document.querySelectorAll("
                         "'#tab-2 .js-plotly-plot')[i])", charts)
    # the number box: layer 3
    page.fill("#layer input[type=number]", "3")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('#tab-2 .js-plotly-plot')[0].layout.title.text.startsWith('layer 3:')")
    assert "Showing layer ℓ = 3" in page.inner_text("#tab-2")
    shoot(page, "03_eq2_layer3")
    # the head menu: head 2 -> the attention matrix of head 2
    page.click("#head input")
    page.click("li.item[aria-label='2']")
    page.wait_for_function("() => document.querySelectorAll('#tab-2 .js-plotly-plot')[1].layout.title.text.includes('layer 3, head 2')")
    assert stats()["model_runs"] == before
    shoot(page, "04_eq2_head2")


def test_clicking_a_patch_moves_the_query(session, stats):
    page = session.page
    before = stats()["model_runs"]
    heads_before = heads_data(page)
    page.locator("#picker img").scroll_into_view_if_needed()
    x, y, width, height, natural_w, natural_h = page.eval_on_selector(
        "#picker img", "e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height, e.naturalWidth, e.naturalHeight]; }")
    scale = min(width / natural_w, height / natural_h, 1.0)  # object-fit: contain / scale-down, centred
    shown_w, shown_h = natural_w * scale, natural_h * scale
    left, top = x + (width - shown_w) / 2, y + (height - shown_h) / 2
    rows = cols = 7  # ViT-Fashion/4: 28 / 4
    row, col = 2, 5
    page.mouse.click(left + shown_w * (col + 0.5) / cols, top + shown_h * (row + 0.5) / rows)
    index = row * cols + col
    page.wait_for_function(f"() => document.querySelector('#selection').innerText.includes('patch {index}')")
    assert f"row {row}, column {col}" in page.inner_text("#selection")
    page.wait_for_function(f"() => document.querySelectorAll('#tab-2 .js-plotly-plot')[0].layout.title.text.includes('query: patch {index}')")
    assert heads_data(page) != heads_before  # the attention shown is now that of patch 19, not of the class token
    assert f"query: patch {index}" in page.inner_text("#tab-2")
    assert stats()["model_runs"] == before
    shoot(page, "05_patch_19")


def test_eq3_shows_its_figures(session, stats):
    page = session.page
    before = stats()["model_runs"]
    open_tab(page, 3)
    assert katex_count(page, 3) >= 1 and "GELU" in page.inner_text("#tab-3")
    assert stats()["model_runs"] == before
    shoot(page, "06_eq3")


def test_eq4_shows_the_prediction_of_a_direct_forward(session, stats):
    page = session.page
    open_tab(page, 4)
    rows = page.evaluate("() => Array.from(document.querySelectorAll('#top-k-table tbody tr'))"
                         ".map(r => Array.from(r.querySelectorAll('td')).map(c => c.innerText.trim()))")
    assert len(rows) == 5, rows
    expected = reference_probabilities(PHOTO)  # the stand-in model on the same file, outside the app
    order = np.argsort(-expected)[:5]
    assert [r[1] for r in rows] == [FASHION_MNIST_CLASSES[i] for i in order], rows
    for row, i in zip(rows, order):
        assert row[2] == f"{expected[i]:.2%}", (row, expected[i])
    shoot(page, "07_eq4")


def charts_alive(page) -> dict:
    """Every plot view's chart the page still holds, attached or not (found through the DevTools protocol, which sees
    detached elements too), and the window's resize listeners."""
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("HeapProfiler.collectGarbage")
        prototype = cdp.send("Runtime.evaluate", {"expression": "HTMLDivElement.prototype"})["result"]["objectId"]
        divs = cdp.send("Runtime.queryObjects", {"prototypeObjectId": prototype})["objects"]["objectId"]
        charts = cdp.send("Runtime.callFunctionOn", {"objectId": divs, "returnByValue": True, "functionDeclaration": (
            "function () { const c = this.filter(d => d.classList.contains('vit-plot') && d.data);"
            " return {attached: c.filter(d => d.isConnected).length, detached: c.filter(d => !d.isConnected).length}; }"
        )})["result"]["value"]
        listeners = cdp.send("Runtime.evaluate", {"expression": "(getEventListeners(window).resize || []).length",
                                                  "includeCommandLineAPI": True, "returnByValue": True})
        return dict(charts, resize_listeners=listeners["result"]["value"])
    finally:
        cdp.detach()


def test_charts_of_steps_left_are_freed_and_charts_follow_the_window(session):
    """A tab switch takes the other steps' views off the page; their charts must go with them (Plotly's `responsive`
    option kept every one alive through a window listener: ~20 charts and 5 MB more per round of tabs), and the
    charts shown still follow the window's width."""
    page = session.page
    open_tab(page, 2)
    before = charts_alive(page)
    for _ in range(3):
        for tab in (1, 2, 3, 2):
            open_tab(page, tab)
    after = charts_alive(page)
    assert after["attached"] == plots_in(2) and after["detached"] == 0, after
    assert after["resize_listeners"] <= before["resize_listeners"], (before, after)

    def widths():
        return [round(p["width"]) for p in visible_plots(page, 2)]

    wide = widths()
    page.set_viewport_size({"width": 900, "height": 1000})
    try:
        page.wait_for_function(f"() => Array.from(document.querySelectorAll('#tab-2 .js-plotly-plot'))"
                               f".every(e => e.getBoundingClientRect().width < {min(wide)})")
        narrow = widths()
    finally:
        page.set_viewport_size({"width": 1400, "height": 1000})
    assert all(n < w for n, w in zip(narrow, wide)), (wide, narrow)
    page.wait_for_function(f"() => Array.from(document.querySelectorAll('#tab-2 .js-plotly-plot'))"
                           f".every(e => e.getBoundingClientRect().width >= {min(wide) - 1})")


def click_patch(page, selector: str, row: int, col: int, rows: int = 7, cols: int = 7) -> None:
    """Click the centre of patch (row, col) of the image in `selector` (object-fit: contain, centred)."""
    page.locator(selector).scroll_into_view_if_needed()
    x, y, width, height, natural_w, natural_h = page.eval_on_selector(
        selector, "e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height, e.naturalWidth, e.naturalHeight]; }")
    scale = min(width / natural_w, height / natural_h, 1.0)
    shown_w, shown_h = natural_w * scale, natural_h * scale
    left, top = x + (width - shown_w) / 2, y + (height - shown_h) / 2
    page.mouse.click(left + shown_w * (col + 0.5) / cols, top + shown_h * (row + 0.5) / rows)


def test_why_this_class_explains_drops_patches_and_reads_a_larger_image(session, stats):
    """Step 5: relevance and Grad-CAM for the top class, then another; a clicked patch leaves the sequence and the
    prediction is that of the shorter sequence (one counted run, no new trace); 2x the input size."""
    import torch

    from app_server import standin_model, standin_preprocessing
    from explorer import explain
    from explorer.images import open_image

    page = session.page
    before = stats()
    titles = [p["title"] for p in open_tab(page, 5)]
    expected = reference_probabilities(PHOTO)
    top, second = (FASHION_MNIST_CLASSES[i] for i in np.argsort(-expected, kind="stable")[:2])
    assert titles[0] == f"relevance for {top}" and titles[1].startswith(f"Grad-CAM for {top}"), titles
    assert titles[2].startswith(f"Which map to trust: p({top})"), titles
    shoot(page, "10_why_this_class")
    # Take patch 24 (row 3, column 3) out of the sequence.
    click_patch(page, "#view-why-dropper img", 3, 3)
    page.wait_for_function("() => Array.from(document.querySelectorAll('#tab-5 .js-plotly-plot'))"
                           ".some(p => p.layout.title.text.includes('without 1 patch'))")
    shown = page.evaluate("() => { const p = Array.from(document.querySelectorAll('#tab-5 .js-plotly-plot'))"
                          ".find(p => p.layout.title.text.includes('without 1 patch'));"
                          " return [Array.from(p.data[1].customdata), Array.from(p.data[1].text)]; }")
    with torch.no_grad():
        x = standin_preprocessing()(open_image(PHOTO).image)  # (1, 1, 28, 28)
        shorter = explain.drop_patches(standin_model(), x, [24]).softmax(-1)[0].numpy()  # (K,)
    for name, text in zip(*shown):
        assert text == f"{100 * shorter[FASHION_MNIST_CLASSES.index(name)]:.1f}%", (name, text)
    after = stats()
    assert after["model_runs"] == before["model_runs"]  # the trace is not run again
    assert after["explain_runs"].get("dropped", 0) == before["explain_runs"].get("dropped", 0) + 1
    shoot(page, "11_patch_dropped")
    # Another class: the maps follow it.
    page.click("#target input")
    page.click(f"li.item[aria-label^='top 2: {second}']")
    page.wait_for_function(f"() => document.querySelectorAll('#tab-5 .js-plotly-plot')[0].layout.title.text"
                           f" === 'relevance for {second}'")
    # Sec. 3.2: twice the input side, position embeddings interpolated to a 14x14 grid.
    page.click("#scale input")
    page.click("li.item[aria-label^='56 × 56']")
    page.wait_for_function("() => Array.from(document.querySelectorAll('#tab-5 .js-plotly-plot'))"
                           ".some(p => p.layout.title.text === 'Prediction: 28 × 28 vs 56 × 56')")
    shoot(page, "12_larger_input")
    open_tab(page, 4)  # back where the tour was (the next test expects Eq. 4 on screen)


def test_switching_to_an_untrained_table_1_model(session, stats):
    page = session.page
    before = stats()["model_runs"]
    page.click("#model input")
    page.click(f"li.item[aria-label^='{UNTRAINED}']")
    page.wait_for_function(f"() => document.querySelector('#model-card').innerText.includes('Model in use: {UNTRAINED}')",
                           timeout=180_000)
    card = page.inner_text("#model-card")
    assert "Random init" in card and "L = 12, D = 768, h = 12, P = 32, input 224×224×3" in card, card
    assert stats()["model_runs"] == before + 1
    # The visible step (Eq. 4) is redrawn for the new model: ImageNet classes, the random-init warning, and K = 1000.
    page.wait_for_function("() => document.querySelector('#top-k-table').innerText.includes('meaningless')")
    classes = page.evaluate("() => Array.from(document.querySelectorAll('#top-k-table tbody tr td:nth-child(2)')).map(c => c.innerText)")
    assert len(classes) == 5 and not set(classes) & set(FASHION_MNIST_CLASSES), classes
    assert "1000" in page.inner_text("#tab-4")
    shoot(page, "08_vit_b32_random")
    open_tab(page, 2)  # the layer slider (off the page while step 2 is hidden) now spans B/32's 12 layers
    assert page.get_attribute("#layer input[type=range]", "max") == "12"
    open_tab(page, 4)


def test_another_upload_runs_analyse_once(session, stats):
    page = session.page
    before = stats()["model_runs"]
    start = time.monotonic()
    page.set_input_files("#upload input[type=file]", str(SECOND_PHOTO))
    page.wait_for_function("() => document.querySelector('#model-runs').innerText.trim() === "
                           f"'model runs: {before + 1}'")
    time.sleep(1.5)  # let a duplicate event, if any, reach the server
    analyses = [body for t, body in session.joins if t >= start and SECOND_PHOTO.name in body]
    assert stats()["model_runs"] == before + 1
    open_tab(page, 0)
    shoot(page, "09_second_photo")
    assert len(analyses) == 1, f"one upload sent /analyse {len(analyses)} times"


def test_nothing_went_wrong_in_the_browser(session):
    assert any("/gradio_api/" in url for url in session.requests)
    session.assert_clean()
