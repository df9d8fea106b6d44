"""Issue 26, items 4-6: slow work shows progress and stops when the visitor moves on; every refusal is one whole
sentence where the person looks; labels say what is true; the package says what to install.

Each test checks against something independent: timm's own save and forward, the model computed twice, the
installed files, pyproject's extras, a Hub that never answers (a patched socket), a closed port on 127.0.0.1.
"""
from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import explorer
from app_server import is_one_sentence
from explorer import ViT, ViTConfig, explain
from explorer.app import text, views
from explorer.families import hub
from explorer.images import Preprocessing
from explorer.render.base import TITLE_CHARACTERS, _figure, wrap_title
from explorer.weights import WeightsUnavailable

REPO = Path(__file__).resolve().parent.parent


def photo_file(folder: Path, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    path = folder / f"photo{seed}.png"
    Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8), "RGB").save(path)
    return str(path)


# ---------------------------------------------------------------------------------------------------------------
# Item 4: progress, paint early, stop when superseded

def grid_model(side: int = 72) -> ViT:
    """A 1-layer ViT on a (side/8)² grid: 81 patches for 72 px, more than explain.ALL_POINTS_UP_TO."""
    torch.manual_seed(0)
    config = ViTConfig(image_size=side, patch_size=8, channels=3, hidden_dim=32, depth=1, heads=4, mlp_dim=64,
                       num_classes=5, name="grid test")
    return ViT(config).eval()


def test_faithfulness_defaults_to_default_steps_with_a_tqdm_bar(capsys):
    model = grid_model()
    x = torch.randn(1, 3, 72, 72)
    result = explain.faithfulness(model, x)
    assert model.config.num_patches > explain.ALL_POINTS_UP_TO
    counts = result.deletion["relevance"].counts
    assert np.array_equal(counts, np.round(np.linspace(0, 81, explain.DEFAULT_STEPS + 1)))  # not all 82 counts
    err = capsys.readouterr().err
    assert "deletion and insertion curves" in err and "forward" in err  # the bar (tqdm redraws at its own pace)
    every = explain.faithfulness(model, x, steps=None, progress=False)
    assert np.array_equal(every.deletion["relevance"].counts, np.arange(82))
    assert "deletion and insertion curves" not in capsys.readouterr().err  # no bar when asked for none


def test_faithfulness_reports_each_forward_and_a_raise_stops_it():
    model, x = grid_model(), torch.randn(1, 3, 72, 72)
    told = []
    explain.faithfulness(model, x, progress=lambda done, total: told.append((done, total)))
    assert told and [d for d, _ in told] == list(range(1, len(told) + 1)) and told[-1][0] == told[-1][1]

    class Stop(Exception):
        pass

    def stop_at_second(done, total):
        if done == 2:
            raise Stop
    with pytest.raises(Stop):
        explain.faithfulness(model, x, progress=stop_at_second)


def test_one_backward_gives_relevance_and_grad_cam_as_each_alone():
    model, x = grid_model(), torch.randn(1, 3, 72, 72)
    both = explain.gradient_maps(model, x, target=3)
    assert np.allclose(both["relevance"], explain.relevance(model, x, target=3), atol=1e-6)
    assert np.allclose(both["grad_cam"], explain.grad_cam(model, x, target=3), atol=1e-6)


@pytest.fixture
def app(tmp_path, monkeypatch):
    """Handlers over a server of the shipped checkpoint, offline, and one traced upload."""
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    for name in ("SPACE_ID", "EXPLORER_CHECKPOINTS", "EXPLORER_MODELS"):
        monkeypatch.delenv(name, raising=False)
    from explorer.app import ui
    from explorer.app.server import Server

    server = Server(device="cpu")
    handlers = ui.Handlers(server)
    label = server.registry.fallback_label()
    path = photo_file(tmp_path)
    entry = server.analyse(path, label)
    return handlers, entry, (path, label)


def test_step_5_paints_the_maps_first_then_the_curves_and_a_newer_request_stops_them(app):
    handlers, entry, source = app
    server = handlers.server
    names = views.step_views(5)
    drawn = dict(zip(names, views.render_views(entry, names, views.Options())))
    pending = drawn["why.faithfulness"]
    assert "Computing the deletion and insertion curves" in json.dumps(pending.to_plotly_json()["data"])
    assert server.explain_runs["gradients"] == 1 and "faithfulness" not in server.explain_runs
    # Superseded at its first forward (the visitor chose another class): nothing drawn, nothing kept.
    target = views.target_class(entry, "")

    def superseded(fraction, desc=""):
        handlers.cancel_slow(None)
    assert handlers.draw_slow(entry.key, source, 5, None, superseded, "") == handlers_skip()
    assert ("faithfulness", target) not in entry.memo and "faithfulness" not in server.explain_runs
    # Left to finish: the curves, with a progress told as a fraction.
    told = []
    value = handlers.draw_slow(entry.key, source, 5, None,
                               lambda fraction, desc="": told.append((fraction, desc)), "")  # one view: bare
    assert told[-1][0] == 1.0 and "forwards" in told[-1][1]
    assert value.layout.title.text.startswith("Which map to trust") and len(value.data) == 10  # 5 maps x 2 curves
    assert server.explain_runs["faithfulness"] == 1 and server.explain_runs["gradients"] == 1
    # On another step, nothing is computed.
    assert handlers.draw_slow(entry.key, source, 2, None, superseded, "") == handlers_skip()


def test_gradio_hands_the_curves_their_visitor_and_progress_bar(app):
    """Gradio fills in a gr.Request and a gr.Progress only where they stand before *args (gradio.helpers.special_args):
    the curves' handler gets both, in the places its signature names them, and the options after them."""
    from gradio.helpers import special_args

    handlers, entry, source = app
    visitor = object()
    inputs, progress_index, _, _ = special_args(handlers.draw_slow, [entry.key, source, 5, "3"], request=visitor)
    assert inputs[3] is visitor and progress_index == 4 and inputs[5:] == ["3"]


def handlers_skip():
    import gradio as gr

    return gr.skip()


# ---------------------------------------------------------------------------------------------------------------
# Item 5: refusals in one whole sentence

@pytest.fixture
def online_hub(tmp_path, monkeypatch):
    """No offline flag, an empty Hugging Face cache, no earlier probe."""
    import huggingface_hub.constants

    for name in ("EXPLORER_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "EXPLORER_MODELS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setattr(hub, "_probes", {})

    def never(*args, **kwargs):
        raise AssertionError("huggingface_hub was asked to download with the Hub out of reach")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", never)


def test_a_hub_that_never_answers_is_told_within_the_probe_not_after_retries(online_hub, monkeypatch):
    import socket

    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    def no_answer(*args, **kwargs):
        time.sleep(8)
        raise TimeoutError("timed out")
    monkeypatch.setattr(socket, "create_connection", no_answer)
    start = time.monotonic()
    with pytest.raises(WeightsUnavailable) as refused:
        explorer.load("someone/vit-tiny")
    elapsed = time.monotonic() - start
    assert elapsed < 5, elapsed  # the probe's 1.5 s, not the 8 s hang (nor huggingface_hub's ~24 s of retries)
    message = str(refused.value)
    assert is_one_sentence(message) and "cannot be reached" in message and "did not answer" in message, message


def test_a_closed_hub_port_is_one_sentence_in_words_that_survive_markdown(online_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: closed
    with pytest.raises(WeightsUnavailable) as refused:
        explorer.load("someone/vit-tiny")
    message = str(refused.value)
    assert is_one_sentence(message) and "127.0.0.1" in message, message
    assert "<" not in message and ">" not in message  # nothing the page's Markdown would take for a tag
    assert "a folder named someone--vit-tiny" in message and "EXPLORER_MODELS" in message, message


def test_without_huggingface_hub_a_hub_id_says_which_extra_to_install(monkeypatch):
    for name in ("huggingface_hub", "huggingface_hub.constants", "huggingface_hub.errors"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ModuleNotFoundError, as in a core install
    with pytest.raises(WeightsUnavailable) as refused:
        explorer.load("someone/vit-tiny")
    message = str(refused.value)
    assert is_one_sentence(message) and 'pip install "vit-explorer[hub]"' in message, message
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("huggingface_hub") for d in extras["hub"])  # the advice installs what is missing


def test_without_gradio_the_app_command_is_one_sentence(monkeypatch):
    from explorer.app import main

    monkeypatch.setitem(sys.modules, "gradio", None)
    with pytest.raises(SystemExit) as exit_:
        main([])
    message = str(exit_.value.code)
    assert is_one_sentence(message) and 'pip install "vit-explorer[app]"' in message, message
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("gradio") for d in extras["app"])


timm = pytest.importorskip("timm")


def timm_model():
    torch.manual_seed(0)
    return timm.create_model("vit_base_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32,
                             depth=2, num_heads=4, num_classes=3).eval()


def test_timm_saved_as_the_docs_say_is_read_and_saved_by_default_is_told_why_not(tmp_path):
    from timm.models import save_for_hf

    docs = (REPO / "docs" / "models.md").read_text() + (REPO / "README.md").read_text()
    assert "save_for_hf(model, folder, safe_serialization=True)" in docs
    model = timm_model()
    save_for_hf(model, tmp_path / "as_docs", safe_serialization=True)  # what the docs tell
    x = torch.randn(1, 3, 32, 32)
    ours = explorer.load(tmp_path / "as_docs").model
    with torch.no_grad():
        assert (ours(x) - model(x)).abs().max() <= 1e-4
    save_for_hf(model, tmp_path / "by_default")  # timm's default: pytorch_model.bin only
    assert sorted(p.name for p in (tmp_path / "by_default").iterdir()) == ["config.json", "pytorch_model.bin"]
    with pytest.raises(WeightsUnavailable) as refused:
        explorer.load(tmp_path / "by_default")
    assert is_one_sentence(str(refused.value)), str(refused.value)


def mismatched_timm_folder(folder: Path) -> Path:
    """timm's save of a D = 32 model whose config.json then says D = 48."""
    from timm.models import save_for_hf

    save_for_hf(timm_model(), folder, safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    config["model_args"] = {**config.get("model_args", {}), "img_size": 32, "patch_size": 8, "embed_dim": 48,
                            "depth": 2, "num_heads": 4}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """EXPLORER_MODELS with a folder whose config does not match its weights, two the menu leaves out, and a grayscale
    transformers ViT without a processor, which it lists (ViTImageProcessor's defaults, one mean per channel)."""
    root = tmp_path / "models"
    mismatched_timm_folder(root / "mismatched")
    (root / "only_pickle").mkdir()
    (root / "only_pickle" / "config.json").write_bytes((root / "mismatched" / "config.json").read_bytes())
    (root / "only_pickle" / "pytorch_model.bin").write_bytes(b"never unpickled")
    (root / "no_weights").mkdir()
    (root / "no_weights" / "config.json").write_bytes((root / "mismatched" / "config.json").read_bytes())
    (root / "gray_hf").mkdir()  # a grayscale transformers ViT without preprocessor_config.json
    (root / "gray_hf" / "config.json").write_text(json.dumps({
        "model_type": "vit", "image_size": 28, "patch_size": 4, "num_channels": 1, "hidden_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 64, "id2label": {"0": "a", "1": "b"}}))
    (root / "gray_hf" / "model.safetensors").write_bytes(b"")
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    monkeypatch.setenv("EXPLORER_MODELS", str(root))
    for name in ("SPACE_ID", "EXPLORER_CHECKPOINTS"):
        monkeypatch.delenv(name, raising=False)
    return root


def test_a_folder_whose_config_does_not_match_its_weights_is_a_sentence_and_the_menu_follows(models_dir, tmp_path):
    import gradio as gr

    from explorer.app import ui
    from explorer.app.server import Server

    with pytest.raises(WeightsUnavailable) as refused:
        explorer.load(models_dir / "mismatched")
    message = str(refused.value)
    assert is_one_sentence(message) and "do not match its config.json" in message, message
    handlers = ui.Handlers(Server(device="cpu"))
    in_use = handlers.server.registry.fallback_label()
    options = [getattr(views.Options(), name) for name in ui.OPTION_NAMES]
    with pytest.warns(UserWarning, match="do not match"):  # gr.Warning outside a request: a Python warning
        out = handlers.analyse(photo_file(tmp_path), "mismatched", 0, in_use, *options)
    header = dict(zip(ui.HEADER_OUTPUTS, out))
    assert header["model"] == header["model_in_use"] == in_use  # the menu names the model in use
    assert "do not match its config.json" in header["status"] and f"Showing {in_use}" not in header["status"]
    assert not isinstance(header["card"], type(gr.skip()))


def test_a_folder_left_out_of_the_menu_says_why_in_the_menu_and_to_predict(models_dir, tmp_path):
    import gradio as gr

    from explorer.app import ui
    from explorer.app.server import Server

    server = Server(device="cpu")
    registry = server.registry
    assert set(registry.left_out) == {"only_pickle", "no_weights"}, registry.left_out
    assert "mismatched" in registry.labels() and "gray_hf" in registry.labels()
    info = registry.menu_info()
    for name in registry.left_out:
        assert f"{name} (" in info, info
    assert "pickle" in registry.left_out["only_pickle"] and "model.safetensors" in registry.left_out["no_weights"]
    handlers = ui.Handlers(server)
    for name in registry.left_out:
        with pytest.raises(gr.Error) as refused:
            handlers.predict(photo_file(tmp_path), name)
        message = refused.value.message
        assert is_one_sentence(message) and name in message and "left out of the menu" in message, message
        assert registry.left_out[name] in message and "<" not in message
    assert "There is no model called" in str(pytest.raises(Exception, registry.resolve, "nothing_here").value)


# ---------------------------------------------------------------------------------------------------------------
# Item 6: labels that are true, titles that fit, the installed package

def test_the_filters_of_a_grayscale_model_are_not_called_rgb(app):
    _, entry, _ = app
    assert entry.config.channels == 1
    title = views.VIEWS["eq1.filters"].draw(entry, views.Options().only(())).layout.title.text
    assert "RGB" not in title and "grayscale" in title, title
    from explorer import render

    rgb = render.filter_components(np.random.default_rng(0).random((4, 8, 8, 3)), np.full(4, 0.1))
    assert rgb.layout.title.text.startswith("RGB embedding filters")


def test_what_the_model_sees_claims_a_crop_only_where_there_is_one():
    assert "crop" not in views.VIEWS["input.seen"].label
    config = ViTConfig(image_size=224, patch_size=16, channels=3, hidden_dim=32, depth=1, heads=4, mlp_dim=64,
                       num_classes=5, name="t")
    whole = text.explanation(0, config, Preprocessing(resize_size=224, crop_size=224, resize_to=(224, 224)))
    assert "whole image is resized" in whole and "crop" not in whole and "central" not in whole
    cropped = text.explanation(0, config, Preprocessing(resize_size=256, crop_size=224))
    assert "central 224 × 224 square" in cropped


def visible(line: str) -> str:
    return re.sub(r"<[^>]*>", "", line)


def test_long_titles_and_notes_are_broken_into_lines_that_fit():
    title = ("Grad-CAM for Ankle boot: zero everywhere (no token entering the last block raises this class's score "
             "x<sub>p</sub><sup>i</sup>)")
    wrapped = wrap_title(title)
    assert all(len(visible(line)) <= TITLE_CHARACTERS for line in wrapped.split("<br>"))
    assert wrapped.replace("<br>", " ") == title  # every word kept, in order, tags whole
    figure = _figure([], title, 300)
    assert figure.layout.title.text == wrapped and figure.layout.margin.t == 48 + 18 * (wrapped.count("<br>") - 1)
    from explorer import render

    note = render.no_survey("ViT-B/16 · IMAGENET1K_SWAG_E2E_V1", 'python -m explorer.survey --model '
                            '"ViT-B/16 · IMAGENET1K_SWAG_E2E_V1" --out $EXPLORER_SURVEYS/my_survey')
    lines = note.data[0].text[0].split("<br>")
    assert len(lines) > 1 and all(len(visible(line)) <= 56 for line in lines)


def test_the_shipped_model_loads_by_name_from_an_installed_copy(tmp_path):
    """The package as `pip install .` lays it out (pyproject's package-dir: checkpoints/ as
    explorer/shipped_checkpoints), imported from outside any checkout."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert project["package-dir"]["explorer.shipped_checkpoints"] == "checkpoints"
    site = tmp_path / "site"
    shutil.copytree(REPO / "explorer", site / "explorer", ignore=shutil.ignore_patterns("__pycache__"))
    shipped = site / "explorer" / "shipped_checkpoints"
    shipped.mkdir(exist_ok=True)
    for pattern in project.get("package-data", {})["explorer.shipped_checkpoints"]:
        for path in (REPO / "checkpoints").glob(pattern):
            if path.is_file():
                shutil.copy(path, shipped / path.name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import explorer; b = explorer.load('vit_fashion_mnist'); "
            "print(explorer.__file__); print(b.model.config.channels, len(b.class_names))")
    done = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(site), "EXPLORER_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    where, numbers = done.stdout.strip().splitlines()
    assert where.startswith(str(site)) and numbers == "1 10", done.stdout


def test_settings_named_in_these_messages_are_in_readme():
    readme = (REPO / "README.md").read_text()
    for variable in ("EXPLORER_MODELS", "EXPLORER_SURVEYS", "EXPLORER_OFFLINE"):
        assert f"`{variable}" in readme, variable
    importlib.import_module("explorer.app.views.eq2")  # the survey command it prints names $EXPLORER_SURVEYS


# ---------------------------------------------------------------------------------------------------------------
# In the page: the refusal's whole sentence under the menu, the left-out folder in the menu's info, step 5's curves
# after its maps, and no "Share chart" on any chart

@pytest.mark.browser
def test_in_the_page_messages_keep_their_words_and_charts_offer_no_upload(tmp_path):
    from app_server import AppServer, open_browser

    models = tmp_path / "models"
    (models / "only_pickle").mkdir(parents=True)
    (models / "only_pickle" / "config.json").write_text(json.dumps({"model_type": "vit"}))
    (models / "only_pickle" / "pytorch_model.bin").write_bytes(b"never unpickled")
    with AppServer(tmp_path / "app", extra_env={"EXPLORER_MODELS": str(models)}) as server, \
            open_browser(server.url) as session:
        page = session.page
        info = page.inner_text("#model")
        assert "Left out of the menu: only_pickle (its weights are only pytorch_model.bin" in info, info
        page.click("#model input")
        page.click("li.item[aria-label^='ViT-B/16 · google/vit-base-patch16-224']")
        page.wait_for_function("() => document.querySelector('#status').innerText.includes('Offline')",
                               timeout=60_000)
        status = page.inner_text("#status").strip()
        assert status.endswith("or run once with the network."), status
        assert "put its config.json and model.safetensors" in status and str(models / "google--vit-base-patch16-224") in status
        in_menu = page.input_value("#model input")  # the menu names the model in use
        assert in_menu.startswith("ViT-Fashion/4 · vit_fashion_standin") and "google" not in in_menu, in_menu
        page.set_input_files("#upload input[type=file]", str(REPO / "assets" / "cat_chelsea.jpg"))
        page.wait_for_function("() => document.querySelector('#model-runs').innerText.includes('model runs: 1')")
        page.click("#tab-5-button")
        page.wait_for_function("() => { const p = document.querySelectorAll('#tab-5 .js-plotly-plot');"
                               " return p.length >= 3 && p[2].data && p[2].data.length === 10; }", timeout=120_000)
        page.hover("#tab-5 .js-plotly-plot")
        buttons = page.evaluate("() => Array.from(document.querySelectorAll('.modebar-btn')).map(b => b.dataset.title)")
        assert buttons and not [b for b in buttons if "Share" in b or "Chart Studio" in b or "cloud" in b.lower()], buttons
        assert not page.query_selector_all("a.modebar-btn--logo"), "Plotly's logo links off the machine"
        session.assert_clean()
