"""The high-norm tokens view (step 3, Darcet et al. 2023) in a real browser (headless Debian Chromium through
Playwright), on a model with 4 registers whose weights make one chosen patch a high-norm token from block 2 on
(tests/test_highnorm.py): its charts appear on step 3, name that patch, draw the class token's attention to the
registers, and the page has no errors; axe-core finds nothing critical or serious on the step. Screenshots go to
test-artifacts/highnorm/."""
from __future__ import annotations

import pytest

from app_server import REPO, STANDIN_STEM, AppServer, open_browser, standin_preprocessing
from explorer import CONFIGS
from explorer.data import FASHION_MNIST_CLASSES
from explorer.weights import save_checkpoint
from test_highnorm import outlier_from_layer_2

pytestmark = pytest.mark.browser

SHOTS = REPO / "test-artifacts" / "highnorm"
AXE = REPO / "tests" / "node_modules" / "axe-core" / "axe.min.js"
BOOT = REPO / "assets" / "fashion_0000_ankle_boot.png"
CHOSEN = 24  # the centre of the 7 x 7 grid
REGISTERS = CONFIGS["ViT-Fashion/4"].replace(register_tokens=4)  # CLS, REG1..REG4, then patch i at 5 + i
VIEWS = ("#view-highnorm-layers", "#view-highnorm-image", "#view-highnorm-attention")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("highnorm")
    # the app's default model (a "fashion" stem): the register model, so that no menu choice is needed
    save_checkpoint(root / "checkpoints" / STANDIN_STEM, outlier_from_layer_2(REGISTERS, 5 + CHOSEN),
                    list(FASHION_MNIST_CLASSES), standin_preprocessing(), {"dataset": "none (test stand-in)"})
    app = AppServer(root).start()
    yield app
    app.stop()


def titles(page) -> list[str]:
    return page.evaluate(f"() => {list(VIEWS)!r}.map(s => {{ const e = document.querySelector(s + ' .js-plotly-plot');"
                         " return e && e.data && e.data.length ? e.layout.title.text.replace(/<br>/g, ' ') : null; })")


def test_the_view_appears_on_step_3_with_the_outlier_and_the_registers(server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with open_browser(server.url) as session:
        page = session.page
        session.upload(BOOT)
        page.click("#tab-3-button")
        page.wait_for_function(f"() => {list(VIEWS)!r}.every(s => {{ const e = document.querySelector(s + "
                               "' .js-plotly-plot'); return e && e.data && e.data.length && e.offsetParent !== null; })")
        layers, image, attention = titles(page)
        assert "1 in the last layer" in layers and "1 outlier patch outlined" in image, (layers, image)
        assert "the class token" in attention
        marks = page.evaluate("() => document.querySelector('#view-highnorm-layers .js-plotly-plot').data[1].x")
        assert marks == [f"patch {CHOSEN}"] * 5, marks  # z_2 .. z_6
        lines = page.evaluate("() => document.querySelector('#view-highnorm-attention .js-plotly-plot')"
                              ".data.map(t => t.name)")
        assert "to the registers" in lines and "to the outlier patches" in lines
        text = page.inner_text("#view-highnorm-text")
        assert "Darcet et al. 2023" in text and "4 register tokens" in text and f"patch {CHOSEN}." in text
        page.wait_for_function("() => document.querySelectorAll('.pending').length === 0")
        page.locator("#view-highnorm-layers").screenshot(path=str(SHOTS / "layers.png"))
        page.screenshot(path=str(SHOTS / "step3.png"), full_page=True)
        if AXE.is_file():
            page.add_script_tag(content=AXE.read_text())
            found = page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']})).violations
                .filter(v => v.impact === 'critical' || v.impact === 'serious')
                .map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))""")
            assert not found, found
        session.assert_clean()
