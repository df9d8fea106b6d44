"""The app for every person, in a real browser (headless Debian Chromium through Playwright): keyboard only,
screen readers (axe-core, alt texts, chart names and their numbers) and a phone (390 × 844).

One server with two stand-in checkpoints (so that a model change by keyboard is quick). The keyboard tour uses no
mouse at all: Tab to an example and Enter, arrows over the patch picker and Enter, arrows along the step tabs and the
radio group, a filter typed into each dropdown and Enter; each time the views must redraw. axe-core (installed by
`npm install axe-core` into tests/node_modules, see .ci/run) must find no critical and no serious violation on any
step. On a phone every step must be reachable, nothing may overflow the screen's width, and charts take the width.
Screenshots go to test-artifacts/a11y/.
"""
from __future__ import annotations

import re
import time

import pytest

from app_server import REPO, STANDIN_LABEL, AppServer, make_standin_checkpoint, new_session, open_browser
from explorer.app import views
from explorer.app.text import STEPS as TEXT_STEPS

pytestmark = pytest.mark.browser

SHOTS = REPO / "test-artifacts" / "a11y"
AXE = REPO / "tests" / "node_modules" / "axe-core" / "axe.min.js"
PHOTO = REPO / "assets" / "cat_chelsea.jpg"
OTHER_STEM = "vit_other_standin"  # a second checkpoint: a model change by keyboard without building a large model
OTHER_LABEL = f"ViT-Fashion/4 · {OTHER_STEM}"
STEPS = len(TEXT_STEPS)
GRID = 7  # the stand-in, ViT-Fashion/4: 28 / 4 patches a side


def plots_in(step: int) -> int:
    return sum(1 for name in views.step_views(step) if views.VIEWS[name].kind == "plot")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("a11y")
    make_standin_checkpoint(root / "checkpoints")
    make_standin_checkpoint(root / "checkpoints", seed=1, stem=OTHER_STEM)
    app = AppServer(root).start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def session(server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with open_browser(server.url) as browser_session:
        yield browser_session


@pytest.fixture(scope="module")
def analysed(session):
    """The desktop page with the photo analysed (uploaded once, shared by the tests that need an image): any test of
    this file passes alone."""
    page = session.page
    page.set_input_files("#upload input[type=file]", str(PHOTO))
    page.wait_for_function("() => { const i = document.querySelector('#picker img'); return i && i.complete &&"
                           f" i.naturalWidth > 0 && i.alt.includes('{GRID} × {GRID} patches'); }}")
    wait_drawn(page, 0)
    return session


def open_step(page, step: int) -> None:
    """Show step `step` by keyboard (its tab focused, Enter: the page is then in keyboard use, and draws focus rings
    as for a person who uses the keyboard) and wait until it is drawn."""
    page.focus(f"#tab-{step}-button")
    if page.get_attribute(f"#tab-{step}-button", "aria-selected") != "true":
        page.keyboard.press("Enter")
    wait_drawn(page, step)


def shoot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def wait_drawn(page, step: int) -> None:
    """Until step `step`'s charts are drawn and its pictures loaded."""
    page.wait_for_function(f"() => Array.from(document.querySelectorAll('#tab-{step} .js-plotly-plot'))"
                           f".filter(e => e.data && e.data.length && e.offsetParent !== null).length >= {plots_in(step)}")
    page.wait_for_function(f"() => Array.from(document.querySelectorAll('#tab-{step} img'))"
                           ".every(i => i.complete && i.naturalWidth > 0)")


def settled(page) -> None:
    """Until no view is faded as pending (Gradio draws an updating view at 20 % opacity: its contrast is not the
    page's)."""
    page.wait_for_function("() => document.querySelectorAll('.pending').length === 0")
    time.sleep(0.3)


def title(page, step: int, index: int) -> str:
    return page.evaluate(f"() => document.querySelectorAll('#tab-{step} .js-plotly-plot')[{index}].layout.title.text")


def focused(page) -> str:
    return page.evaluate("() => { const e = document.activeElement; return (e.id || '') + ' ' + e.tagName + ' '"
                         " + (e.getAttribute('aria-label') || e.innerText || '').slice(0, 80); }")


def focus_is_visible(page) -> bool:
    """The focused element draws a focus ring (an outline of 2 px or more that is not `none`)."""
    return page.evaluate("() => { const s = getComputedStyle(document.activeElement);"
                         " return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2; }")


def tab_until(page, selector: str, limit: int = 80) -> None:
    """Press Tab until the element matching `selector` (or one inside it) has the focus."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"() => !!document.activeElement.closest({selector!r})"):
            return
    raise AssertionError(f"{selector} never got the focus by Tab; last: {focused(page)}")


# ---------------------------------------------------------------------------------------------------------------
# Keyboard only

def test_an_example_chosen_by_keyboard_runs_the_model(analysed):
    page = analysed.page
    open_step(page, 0)
    before = page.get_attribute("#picker img", "src")
    page.focus("body")
    tab_until(page, "button.gallery-item")
    assert focus_is_visible(page)
    name = page.evaluate("() => document.activeElement.getAttribute('aria-label')")
    assert name and name.startswith("Example image: "), name
    if name.endswith(PHOTO.name):  # an example other than the photo analysed already: the picture must change
        page.keyboard.press("Tab")
        name = page.evaluate("() => document.activeElement.getAttribute('aria-label')")
    page.keyboard.press("Enter")
    page.wait_for_function("before => { const i = document.querySelector('#picker img'); return i && i.complete &&"
                           f" i.naturalWidth > 0 && i.src !== before && i.alt.includes('{GRID} × {GRID} patches'); }}",
                           arg=before)
    wait_drawn(page, 0)
    assert "no patch selected" in page.get_attribute("#picker img", "alt")


def test_a_patch_is_picked_with_the_arrows_and_enter(analysed):
    page = analysed.page
    page.focus("#class-token")  # the control just before the picker: Tab from there reaches it
    page.keyboard.press("Shift+Tab")
    if not page.evaluate("() => !!document.activeElement.closest('#picker')"):
        tab_until(page, "#picker")
    assert focus_is_visible(page)
    for key in ["ArrowRight"] * 3 + ["ArrowDown"] * 2:
        page.keyboard.press(key)
    assert "Cursor on patch 17 (row 2, column 3)" in page.inner_text("#picker .vit-live")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#selection').innerText.includes('patch 17')")
    assert "row 2, column 3" in page.inner_text("#selection")
    page.wait_for_function("() => document.querySelector('#picker img').alt.includes('patch 17 selected')")
    # With the picture still focused, the picker comes to rest: the cursor's words are written only when they change
    # (each write is a DOM change that would draw the cursor again, a frame later, forever). (Only the picker is
    # watched: Gradio's own status words for screen readers change once more when its last event ends.)
    assert page.evaluate("""() => document.activeElement.closest('#picker') !== null""")
    changes = page.evaluate("""() => new Promise(done => {
        let n = 0;
        const seen = new MutationObserver(records => { n += records.length; });
        seen.observe(document.querySelector('#picker'), {childList: true, subtree: true, characterData: true,
                                                         attributes: true});
        setTimeout(() => { seen.disconnect(); done(n); }, 1500);
    })""")
    assert changes == 0, f"{changes} changes to the picker at rest in 1.5 s"


def test_tabs_follow_the_arrow_keys(analysed):
    page = analysed.page
    open_step(page, 0)
    page.focus("#tab-0-button")
    for step in (1, 2):
        page.keyboard.press("ArrowRight")
        assert page.evaluate("() => document.activeElement.id") == f"tab-{step}-button"
        assert page.get_attribute(f"#tab-{step}-button", "aria-selected") == "true"
        wait_drawn(page, step)  # the same event as a click: the step is drawn
    assert focus_is_visible(page)
    picked = re.search(r"patch (\d+)", page.inner_text("#selection"))  # the query shown is the one picked
    assert (f"query: patch {picked.group(1)}" if picked else "query: CLS") in title(page, 2, 0)


def test_dropdown_chosen_by_keyboard_redraws(analysed):
    page = analysed.page
    open_step(page, 2)
    assert "mean" in title(page, 2, 1)
    page.focus("#head input")
    assert focus_is_visible(page)
    page.keyboard.press("Control+A")  # the menu's text, replaced by a filter; then Enter
    page.keyboard.type("3")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('#tab-2 .js-plotly-plot')[1].layout.title.text"
                           ".includes('head 3')")
    page.focus("#head input")
    for _ in range(3):  # the arrows, then Enter: from head 3 up to the first choice, "mean"
        page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    page.wait_for_function("() => !document.querySelectorAll('#tab-2 .js-plotly-plot')[1].layout.title.text"
                           ".includes('head 3')")
    assert page.input_value("#head input") == "mean"


def test_radios_are_one_group_moved_by_the_arrows(analysed):
    page = analysed.page
    open_step(page, 2)
    rollout = next(i for i, name in enumerate(n for n in views.step_views(2) if views.VIEWS[n].kind == "plot")
                   if name == "eq2.rollout")
    assert "head fusion mean" in title(page, 2, rollout)
    names = page.evaluate("() => Array.from(document.querySelectorAll('#fusion input[type=radio]')).map(i => i.name)")
    assert len(names) == 3 and len(set(names)) == 1, names
    page.focus("#fusion input[value=mean]")
    assert focus_is_visible(page)
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"() => document.querySelectorAll('#tab-2 .js-plotly-plot')[{rollout}].layout.title.text"
                           ".includes('head fusion max')")
    assert page.is_checked("#fusion input[value=max]")


def test_model_chosen_by_keyboard_is_the_model_in_use(analysed):
    page = analysed.page
    open_step(page, 2)
    page.focus("#model input")
    page.keyboard.press("Control+A")
    page.keyboard.type(OTHER_STEM)
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => document.querySelector('#model-card').innerText.includes('{OTHER_STEM}')")
    assert OTHER_LABEL in page.input_value("#model input")
    wait_drawn(page, 2)
    # and back, with the arrows: the menu and the model in use agree again
    page.focus("#model input")
    page.keyboard.press("ArrowUp")  # from nothing highlighted: the last choice; then up to the first stand-in
    while STANDIN_LABEL not in page.evaluate("() => (document.querySelector('#model li.active') || {}).innerText || ''"):
        page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => document.querySelector('#model-card').innerText.includes('Model in use: "
                           f"{STANDIN_LABEL}')")


def test_a_patch_is_dropped_by_keyboard(analysed):
    page = analysed.page
    page.focus("#tab-2-button")
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    assert page.get_attribute("#tab-5-button", "aria-selected") == "true"
    wait_drawn(page, 5)
    page.focus("#view-why-dropper button")
    assert focus_is_visible(page)
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")  # patch 7 (row 1, column 0) out
    page.wait_for_function("() => document.querySelector('#view-why-dropper img').alt"
                           ".includes('patches taken out: 7.')")
    shoot(page, "keyboard_step5")


def test_the_class_to_explain_is_chosen_by_keyboard(analysed):
    page = analysed.page
    open_step(page, 5)
    before = page.evaluate("() => Array.from(document.querySelectorAll('#tab-5 .js-plotly-plot'))"
                           ".map(e => e.layout.title.text)")
    page.focus("#target input")
    page.keyboard.press("Control+A")
    page.keyboard.type("Bag")
    page.keyboard.press("Enter")
    page.wait_for_function("() => Array.from(document.querySelectorAll('#tab-5 .js-plotly-plot'))"
                           ".some(e => e.layout.title.text.includes('relevance for Bag'))")
    assert before != page.evaluate("() => Array.from(document.querySelectorAll('#tab-5 .js-plotly-plot'))"
                                   ".map(e => e.layout.title.text)")


# ---------------------------------------------------------------------------------------------------------------
# Screen readers

def axe_violations(page) -> list[dict]:
    if not page.evaluate("() => !!window.axe"):
        page.add_script_tag(content=AXE.read_text())
    return page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']})).violations
        .filter(v => v.impact === 'critical' || v.impact === 'serious')
        .map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))""")


def test_axe_finds_nothing_critical_or_serious_on_any_step(analysed):
    if not AXE.is_file():
        pytest.skip("axe-core is not installed: npm install --prefix tests axe-core (.ci/run does)")
    page = analysed.page
    found = {}
    for step in range(STEPS):
        page.click(f"#tab-{step}-button")
        wait_drawn(page, step)
        settled(page)
        found[step] = axe_violations(page)
    assert not any(found.values()), found


def test_every_picture_and_chart_says_what_it_shows(analysed):
    page = analysed.page
    for step in range(STEPS):
        page.click(f"#tab-{step}-button")
        wait_drawn(page, step)
        pictures = page.evaluate(f"""() => Array.from(document.querySelectorAll('#tab-{step} img, #picker img'))
            .filter(i => i.offsetParent !== null).map(i => i.alt)""")
        assert all(len(alt) > 20 for alt in pictures), (step, pictures)
        charts = page.evaluate(f"""() => Array.from(document.querySelectorAll('#tab-{step} .vit-plot'))
            .filter(e => e.offsetParent !== null).map(e => [e.getAttribute('role'), e.getAttribute('aria-label'),
                e.layout && e.layout.title && e.layout.title.text,
                !e.parentElement.querySelector('.vit-csv').hidden])""")
        assert len(charts) == plots_in(step)
        for role, label, shown_title, csv in charts:
            assert role == "figure" and csv, (step, label)
            words = " ".join(re.sub(r"<[^>]*>", " ", shown_title).split())
            assert label and label.endswith(words), (step, label, shown_title)


def test_a_chart_s_numbers_download_as_csv(analysed):
    page = analysed.page
    page.click("#tab-4-button")
    wait_drawn(page, 4)
    with page.expect_download() as download:
        page.locator("#tab-4 .vit-csv").first.click()  # the top-k bar chart's numbers
    rows = open(download.value.path()).read().splitlines()
    assert rows[0] == "trace,name,index,x,y,z,text", rows[:3]
    # the same numbers as the top-k table beside the chart (its probability column, as percentages)
    table = page.evaluate("() => Array.from(document.querySelectorAll('#top-k-table tbody tr'))"
                          ".map(r => r.innerText)")
    assert len(rows) - 1 == len(table) == 5, (rows, table)
    for row in rows[1:]:
        probability = float(row.split(",")[3])
        assert any(f"{100 * probability:.2f}%" in line for line in table), (row, table)


# ---------------------------------------------------------------------------------------------------------------
# A phone

OVERFLOW = """() => {
    const width = window.innerWidth;
    // (not counted: what is hidden on purpose, KaTeX's MathML copy, Plotly's off-screen measuring SVG)
    const wide = Array.from(document.querySelectorAll('body *')).filter(e => {
        if (e.offsetParent === null || e.closest('.visually-hidden, .vit-live, .vit-csv[hidden], .katex-mathml, #js-plotly-tester')) return false;
        const r = e.getBoundingClientRect();
        if (!(r.width > 0 && (r.right > width + 1 || r.left < -1))) return false;
        // inside a box that fits and scrolls sideways (a wide equation: reachable) or clips (a chart's SVG: what
        // lies outside is not drawn)
        for (let a = e.parentElement; a; a = a.parentElement) {
            const box = a.getBoundingClientRect(), x = getComputedStyle(a).overflowX;
            if (x !== 'visible' && box.left >= -1 && box.right <= width + 1) return false;
        }
        return true;
    }).map(e => e.tagName + '#' + e.id + '.' + String(e.getAttribute('class')).slice(0, 40));
    return {scroll: document.documentElement.scrollWidth, width, wide: wide.slice(0, 8)};
}"""


# On a phone, the least width (px) each panel of a figure drawn for a narrow screen takes, by the figure's kind: one
# picture per line for the maps of Fig. 6 (rollout, relevance, Grad-CAM: ~75 px each, three side by side, before),
# two head maps to a line (~45 px each, six to a line, before), four feature maps or filters, three token-norm maps.
# The grids of grids (every layer × head, Fig. 7 centre) keep their layout: their place in the grid is their meaning.
PANEL_WIDTH = {"rollout": 300, "attention_heads": 140, "feature_maps": 65, "filter_components": 55, "token_norms": 85}
PANELS = """step => Array.from(document.querySelectorAll(`#tab-${step} .js-plotly-plot`)).map(p => {
    const meta = p.layout.meta || {}, x = p._fullLayout.xaxis;
    const wide = meta.panel ? meta.panel[1] : meta.tile ? meta.tile[1] : null;  // a panel's width, in axis units
    return [meta.kind || '', wide === null ? null : wide * x._length / Math.abs(x.range[1] - x.range[0]),
            p._fullLayout.xaxis2 ? [x._length, p._fullLayout.xaxis2._length] : [x._length]];
})"""
# The views on a step whose own content is wider than they are (a view that scrolls sideways or cuts its content).
VIEWS_TOO_WIDE = """step => Array.from(document.querySelectorAll(`#tab-${step} [id^=view-]`))
    .filter(v => v.offsetParent !== null && v.scrollWidth > v.clientWidth + 1).map(v => v.id)"""


def test_a_phone_reaches_every_step_and_nothing_overflows(server, session):
    phone = new_session(session.page.context.browser, server.url, width=390, height=844)
    try:
        page = phone.page
        phone.upload(PHOTO)
        tabs = page.evaluate("() => Array.from(document.querySelectorAll('#steps [role=tab]'))"
                             ".filter(t => t.offsetParent !== null).map(t => t.id)")
        assert tabs == [f"tab-{step}-button" for step in range(STEPS)], tabs  # none behind a "⋯" menu
        drawn = set()
        for step in range(STEPS):
            page.click(f"#tab-{step}-button")
            wait_drawn(page, step)
            if step == 5:  # the faithfulness curves follow the maps
                page.wait_for_function("() => Array.from(document.querySelectorAll('#tab-5 .js-plotly-plot'))"
                                       ".some(p => p.layout.title.text.replace(/<br>/g, ' ').includes('most relevant'))")
            deadline = time.monotonic() + 5  # the charts follow their boxes' new width
            while (overflow := page.evaluate(OVERFLOW))["wide"] and time.monotonic() < deadline:
                time.sleep(0.25)
            shoot(page, f"phone_step{step}")
            assert overflow["scroll"] <= overflow["width"] and not overflow["wide"], (step, overflow)
            assert not page.evaluate(VIEWS_TOO_WIDE, step)
            widths = page.evaluate(f"() => Array.from(document.querySelectorAll('#tab-{step} .js-plotly-plot'))"
                                   ".map(e => e.getBoundingClientRect().width)")
            assert all(w >= 0.9 * 390 for w in widths), (step, widths)
            fonts = page.evaluate(f"() => Array.from(document.querySelectorAll('#tab-{step} .js-plotly-plot "
                                  f".xtick text, #tab-{step} .js-plotly-plot .ytick text'))"
                                  ".map(t => parseFloat(getComputedStyle(t).fontSize))")
            assert all(size >= 9 for size in fonts), (step, min(fonts))
            clipped = page.evaluate(f"() => Array.from(document.querySelectorAll('#tab-{step} .js-plotly-plot')).filter("
                                    "p => Array.from(p.querySelectorAll('.gtitle')).some(t => {"
                                    " const r = t.getBoundingClientRect(), b = p.getBoundingClientRect();"
                                    " return r.left < b.left - 1 || r.right > b.right + 1; }))"
                                    ".map(p => p.layout.title.text)")
            assert not clipped, (step, clipped)  # titles wrapped to the chart's width
            for kind, panel, plot_widths in page.evaluate(PANELS, step):
                if kind in PANEL_WIDTH:
                    assert panel >= PANEL_WIDTH[kind], (step, kind, panel)
                    drawn.add(kind)
                if kind == "" and len(plot_widths) == 2:  # two plots in one chart (the faithfulness curves)
                    assert min(plot_widths) >= 0.75 * 390, (step, plot_widths)
                    drawn.add("two plots")
            if AXE.is_file():  # the phone's layout too: no critical or serious violation
                settled(page)
                assert not axe_violations(page), (step, axe_violations(page))
        assert drawn == set(PANEL_WIDTH) | {"two plots"}, drawn
        # the picker sits right above the steps it drives
        picker, steps = page.evaluate("() => ['#picker', '#steps'].map(s => { const r = document.querySelector(s)"
                                      ".getBoundingClientRect(); return [r.top + scrollY, r.bottom + scrollY]; })")
        assert picker[1] <= steps[0] + 1 and steps[0] - picker[1] < 200, (picker, steps)
        # and stays in sight, a third of the screen at most, while the views it drives scroll under it
        page.locator("#tab-5 .js-plotly-plot").last.scroll_into_view_if_needed()
        top, bottom = page.evaluate("() => { const r = document.querySelector('#picker').getBoundingClientRect();"
                                    " return [r.top, r.bottom]; }")
        assert top >= -1 and bottom - top <= 844 / 3, (top, bottom)
        phone.assert_clean()
    finally:
        phone.page.context.close()


def test_nothing_went_wrong_in_the_browser(session):
    session.assert_clean()
