"""The Gradio app, in-process on 127.0.0.1 and a free port, driven through gradio_client.

Offline (EXPLORER_OFFLINE=1), with a stand-in Fashion-MNIST checkpoint (random weights) in a tmp folder given by
EXPLORER_CHECKPOINTS, and an empty TORCH_HOME: the shipped-model path that a machine without internet takes.
"""
from __future__ import annotations

import json
import struct
import zlib
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer import CONFIGS, ViT
from explorer.data import FASHION_MNIST_CLASSES
from explorer.images import Preprocessing, open_image
from explorer.weights import load_checkpoint, save_checkpoint

from app_server import free_port

gradio_client = pytest.importorskip("gradio_client")
from explorer.app import ui, views  # noqa: E402
from explorer.app.settings import MAX_UPLOAD_MB, Settings, default_address  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "assets"
LABEL = "ViT-Fashion/4 · vit_fashion_app_test"
LN = "LN before MSA (Eq. 2)"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    torch.manual_seed(5)
    model = ViT(CONFIGS["ViT-Fashion/4"]).eval()
    with torch.no_grad():
        model.head.weight.normal_(std=0.5)
    pre = Preprocessing(resize_size=28, crop_size=28, channels=1, mean=(0.286,), std=(0.353,), invert="auto")
    save_checkpoint(root / "checkpoints" / "vit_fashion_app_test", model, FASHION_MNIST_CLASSES, pre,
                    {"dataset": "Fashion-MNIST (stand-in)"})
    patch = pytest.MonkeyPatch()
    patch.setenv("EXPLORER_OFFLINE", "1")
    patch.setenv("EXPLORER_CHECKPOINTS", str(root / "checkpoints"))
    patch.setenv("TORCH_HOME", str(root / "torch"))
    patch.setenv("GRADIO_TEMP_DIR", str(root / "uploads"))
    patch.delenv("SPACE_ID", raising=False)
    from explorer.app import ui
    from explorer.app.server import Server
    from explorer.app.settings import Settings

    app = ui.build_app(Server(Settings.from_env()))  # the factory app.py uses, on the settings of this environment
    app.demo.queue(**ui.QUEUE)
    _, url, _ = app.demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                                quiet=True, **ui.launch_options(app.server))
    try:
        yield app, url, root
    finally:
        app.demo.close()
        patch.undo()


@pytest.fixture
def client(served):
    return Client(served[1], verbose=False)


def _runs(client) -> int:
    return client.predict(api_name="/stats")["model_runs"]


def _direct_top_k(root, image_path, k=5):
    bundle = load_checkpoint(root / "checkpoints" / "vit_fashion_app_test")
    with torch.no_grad():
        probabilities = bundle.model(bundle.preprocessing(open_image(image_path).image)).softmax(-1)[0]
    top = probabilities.topk(k)
    return [bundle.class_names[i] for i in top.indices.tolist()], top.values.numpy()


def test_serves_on_localhost_with_the_shipped_model_by_default(served):
    app, url, _ = served
    assert url.startswith("http://127.0.0.1:")
    assert app.handlers.default_model == LABEL
    config = json.loads(urllib.request.urlopen(url + "config", timeout=10).read())
    text = json.dumps(config, ensure_ascii=False)
    assert "model-runs" in text and LABEL in text and "EXPLORER_OFFLINE is set" in text


def test_api_lists_the_public_endpoints_only(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/predict", "/analyse", "/stats"} <= set(endpoints)
    assert not any(name.startswith("/set_") or name.startswith("/step_") for name in endpoints)


def test_predict_matches_a_direct_forward(served, client):
    _, _, root = served
    image = ASSETS / "fashion_0000_ankle_boot.png"
    result = client.predict(handle_file(str(image)), LABEL, 5, api_name="/predict")
    names, probabilities = _direct_top_k(root, image)
    assert [r["label"] for r in result["top_k"]] == names
    np.testing.assert_allclose([r["probability"] for r in result["top_k"]], probabilities, atol=1e-5)
    assert result["model"] == LABEL and result["trained"] is True
    # The short name works too, and the same image does not run the model again.
    runs = _runs(client)
    again = client.predict(handle_file(str(image)), "vit_fashion_app_test", 3, api_name="/predict")
    assert [r["label"] for r in again["top_k"]] == names[:3]
    assert _runs(client) == runs


def test_upload_then_controls_redraw_without_running_the_model(client):
    before = _runs(client)
    outputs = client.predict(handle_file(str(ASSETS / "cat_chelsea.jpg")), LABEL, "0, 1, 2", 1, "mean", "mean", 0.0,
                             1, LN, api_name="/analyse")
    assert _runs(client) == before + 1
    model, card, status, runs = outputs[:4]
    assert model == LABEL and LABEL in card and status == "" and runs == f"model runs: {before + 1}"
    assert "photos are mapped to what it expects" in card
    # Every control's value, by name; each event takes the options its views read (ui.reads), in Options' order.
    values = dict(indices="0, 1, 2", layer=3, head="2", fusion="max", discard=0.3, ln_layer=2, ln_which=LN, target="",
                  scale=1.0, query_label="CLS")
    events = {"/set_layer": views.affected(2, "layer"), "/set_head": views.affected(2, "head"),
              "/set_fusion": views.affected(2, "fusion"), "/set_discard": views.affected(2, "discard"),
              "/set_ln_layer": views.affected(3, "ln_layer"), "/class_token": ui.SELECTED_VIEWS,
              **{f"/step_{n}": views.step_views(n) for n in range(1, 5)}}
    sent = {}
    for endpoint, drawn in events.items():
        sent[endpoint] = [values[name] for name in ui.reads(drawn) if name in values]
        result = client.predict(*sent[endpoint], api_name=endpoint)
        assert result is not None, endpoint
    assert sent["/set_layer"] == [3, "2", "CLS"] and sent["/set_fusion"] == ["max", 0.3]  # (selected is a State)
    layer_outputs = client.predict(*sent["/set_layer"], api_name="/set_layer")
    assert "layer ℓ = 3" in layer_outputs[0]
    assert all(isinstance(value, dict) and value.get("type") == "plotly" for value in layer_outputs[1:])
    assert _runs(client) == before + 1  # no control ran the model


def test_a_text_file_named_png_is_one_sentence_and_the_next_request_works(served, client, tmp_path):
    fake = tmp_path / "photo.png"
    fake.write_text("This is a letter, not a picture.\n")
    with pytest.raises(AppError) as error:
        client.predict(handle_file(str(fake)), LABEL, 5, api_name="/predict")
    message = str(error.value)
    assert "not an image" in message and "\n" not in message.strip() and message.strip().endswith(".")
    image = ASSETS / "fashion_0002_trouser.png"
    result = client.predict(handle_file(str(image)), LABEL, 5, api_name="/predict")
    assert [r["label"] for r in result["top_k"]] == _direct_top_k(served[2], image)[0]


def test_a_broken_upload_in_the_page_is_a_status_line(client, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((ASSETS / "coffee.jpg").read_bytes()[:300])  # a truncated JPEG
    outputs = client.predict(handle_file(str(broken)), LABEL, "0", 1, "mean", "mean", 0.0, 1, LN, api_name="/analyse")
    status = outputs[2]
    assert status.startswith("⚠️ ") and status.count("\n") == 0 and status.endswith(".")


def test_offline_pretrained_weights_are_told_and_the_shipped_model_stays(client):
    coffee = handle_file(str(ASSETS / "coffee.jpg"))
    client.predict(coffee, LABEL, "0", 1, "mean", "mean", 0.0, 1, LN, api_name="/analyse")
    runs = _runs(client)
    outputs = client.predict(coffee, "ViT-B/16 · IMAGENET1K_V1", "0", 1, "mean", "mean", 0.0, 1, LN, api_name="/analyse")
    model, card, status = outputs[:3]
    assert model == LABEL and LABEL in card  # the menu goes back to the model in use, which keeps showing
    assert status.startswith("⚠️ ") and "Offline" in status and status.count("\n") == 0
    assert _runs(client) == runs  # that image was already traced with the shipped model
    result = client.predict(coffee, LABEL, 5, api_name="/predict")
    assert len(result["top_k"]) == 5


def test_a_default_model_that_cannot_load_falls_back_to_the_shipped_one(served):
    app = served[0]
    b16 = "ViT-B/16 · IMAGENET1K_V1"  # as on a Space that turns out to have no network
    with pytest.warns(UserWarning, match="Offline"):  # gr.Warning, outside a request: a Python warning
        outputs = app.handlers.analyse(str(ASSETS / "rocket.jpg"), b16, 0, b16, None, "0", 1, "mean", "mean", 0.0, 1, LN)
    header = dict(zip(ui.HEADER_OUTPUTS, outputs))
    assert header["model"] == header["model_in_use"] == LABEL
    assert header["status"].startswith("⚠️ Offline") and header["status"].endswith(f"Showing {LABEL} instead.")
    assert header["key"][1] == LABEL and app.server.entry(header["key"]).trace.probabilities.shape == (10,)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height 1-bit pixels and holds almost no data (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_one_sentence(client, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(30000, 30000))
    with pytest.raises(AppError, match="(?i)megapixels") as error:
        client.predict(handle_file(str(bomb)), LABEL, 5, api_name="/predict")
    assert "\n" not in str(error.value).strip()
    outputs = client.predict(handle_file(str(bomb)), LABEL, "0", 1, "mean", "mean", 0.0, 1, LN, api_name="/analyse")
    assert outputs[2].startswith("⚠️ ") and "megapixels" in outputs[2]


def test_uploads_over_20_mb_are_refused(client, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(21 * 2**20))
    with pytest.raises(Exception, match="(?i)size|large|413"):
        client.predict(handle_file(str(big)), LABEL, 5, api_name="/predict")


def test_a_click_on_the_picker_selects_that_patch_for_the_visible_step_only(served):
    app = served[0]
    key = app.server.analyse(ASSETS / "fashion_0009_sneaker.png", LABEL).key
    runs = app.server.runs

    class Click:  # what gr.SelectData carries: [x, y] in the picker image's pixels
        index = [2.5 * 64, 4.5 * 64]  # ViT-Fashion/4's picker: 28 px x 16 = 448 px, 64 px per 4-pixel patch

    every = dict(indices="0", layer=3, head="mean", fusion="mean", discard=0.0, ln_layer=1, ln_which=LN, query_label="CLS")
    outputs = app.handlers.select_patch(Click, key, None, 2, *(every[name] for name in ui.SELECTED_READS))
    selected, picker, selection = outputs[:3]
    assert selected == 4 * 7 + 2 and "patch 30" in selection and picker["value"].shape == (448, 448, 3)
    assert "7 × 7 patches" in picker["alt_text"] and "patch 30 selected (row 4, column 2)" in picker["alt_text"]
    drawn = dict(zip(ui.SELECTED_VIEWS, outputs[3:]))
    for name, value in drawn.items():  # the hidden steps' views are emptied: their tab draws them when opened
        assert (value is not None) == name.startswith("eq2."), name
    assert "query: patch 30" in drawn["eq2.text"]
    assert app.server.runs == runs


def test_a_dropped_trace_is_traced_again_from_the_upload_without_a_warning(served, tmp_path, recwarn):
    """Many users at once can push a trace out of the cache: a control change then traces the upload again (one
    model run) and draws the same figures, instead of a skipped redraw and 'upload it again'."""
    app = served[0]
    upload = tmp_path / "sneaker.png"
    upload.write_bytes((ASSETS / "fashion_0009_sneaker.png").read_bytes())
    header = dict(zip(ui.HEADER_OUTPUTS, app.handlers.analyse(str(upload), LABEL, 2, LABEL, None, "0", 3, "mean",
                                                              "mean", 0.0, 1, LN)))
    key, source = header["key"], header["source"]
    assert source == (str(upload), LABEL)
    names = views.affected(2, "layer")
    every = dict(selected=None, indices="0", layer=3, head="mean", fusion="mean", discard=0.0, ln_layer=1, ln_which=LN,
                 query_label="CLS")

    def options(drawn, exclude=()):  # what an event that draws these views sends (ui.reads)
        return tuple(every.get(name) for name in ui.reads(drawn) if name not in exclude)
    handlers, server = app.handlers, app.server
    cached = handlers.redraw(names)(key, source, *options(names))
    server.cache.clear()
    runs = server.runs
    again = handlers.redraw(names)(key, source, *options(names))
    assert server.runs == runs + 1 and key in server.cache
    assert again[0] == cached[0] and "layer ℓ = 3" in again[0]
    assert again[1].to_json() == cached[1].to_json()  # the same attention, drawn from the new trace
    for handler, args in ((handlers.show_step(4), (key, source) + options(views.step_views(4))),
                          (handlers.select_class_token, (key, source, 2) + options(ui.SELECTED_VIEWS, ("selected",))),
                          (handlers.new_random_indices, (key, source) + options(views.affected(1, "indices")))):
        server.cache.clear()
        values = handler(*args)
        assert not any(isinstance(value, dict) and value == {"__type__": "update"} for value in values[1:3]), handler
    assert not [w for w in recwarn if "upload it again" in str(w.message)]
    # Without the upload (its file deleted by Gradio's clean-up) the user is told, once, and nothing is drawn.
    server.cache.clear()
    upload.unlink()
    with pytest.warns(UserWarning, match="upload it again"):
        values = handlers.redraw(names)(key, source, *options(names))
    assert all(isinstance(value, dict) and value == {"__type__": "update"} for value in values)


@pytest.mark.parametrize("env, expected", [
    ({}, ("127.0.0.1", 7860)),
    ({"SPACE_ID": "someone/vit-explorer"}, ("0.0.0.0", 7860)),  # a Space runs `python app.py` and expects 0.0.0.0:7860
    ({"SPACE_ID": "someone/vit-explorer", "GRADIO_SERVER_NAME": "127.0.0.1"}, ("127.0.0.1", 7860)),
    ({"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "8080"}, ("0.0.0.0", 8080)),
    ({"EXPLORER_HOST": "127.0.0.2", "GRADIO_SERVER_NAME": "0.0.0.0", "SPACE_ID": "x/y"}, ("127.0.0.2", 7860)),
    ({"EXPLORER_PORT": "9000", "GRADIO_SERVER_PORT": "8080"}, ("127.0.0.1", 9000)),
    ({"SPACE_ID": "", "EXPLORER_HOST": " "}, ("127.0.0.1", 7860)),  # empty values count as unset
])
def test_default_address_binds_all_interfaces_on_a_space_only(env, expected):
    assert default_address(env) == expected
    assert (Settings.from_env(env).host, Settings.from_env(env).port) == expected


def test_without_an_image_the_card_asks_for_one_and_no_earlier_views_stay(served):
    """A model chosen while the upload box is empty (nothing yet, removed, or an upload refused with 413): the card
    asks for an image, so the picker and every step's views of an earlier image are cleared, not left on screen."""
    app = served[0]
    outputs = app.handlers.analyse(None, LABEL, 2, LABEL, None, "0", 3, "mean", "mean", 0.0, 1, LN)
    header = dict(zip(ui.HEADER_OUTPUTS, outputs))
    assert "upload an image" in header["card"]
    assert header["key"] is None and header["source"] is None and header["picker"] is None
    assert outputs[len(ui.HEADER_OUTPUTS):] == [None] * len(views.all_views())


def test_the_upload_box_states_the_size_limit_the_server_enforces(served):
    app = served[0]
    config = app.demo.get_config_file()
    upload = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "upload")
    assert f"up to {MAX_UPLOAD_MB} MB" in upload["props"]["label"]
    assert ui.launch_options(app.server)["max_file_size"] == f"{MAX_UPLOAD_MB}mb" and MAX_UPLOAD_MB == 20


def test_every_event_is_wired_from_the_view_registry(served):
    """The page's events, read back from the Blocks the factory built: a control's event has as outputs exactly the
    views of its step that read it; a tab, exactly its step's views; a patch click, the views that read `selected`;
    and each event's option inputs are the options its views read (ui.reads), in Options' order."""
    app = served[0]
    names = {id(component): name for name, component in app.components.items()}
    events = {fn.api_name: fn for fn in app.demo.fns.values() if fn.api_name}
    for option, control in views.CONTROLS.items():
        event = events[f"set_{option}"]
        drawn = views.affected(control.step, option)
        assert [names[id(c)] for c in event.outputs] == drawn, option
        read = [o for o in views.OPTION_NAMES if any(o in views.VIEWS[name].reads for name in drawn)]
        assert option in read and [names[id(c)] for c in event.inputs] == ["key", "source"] + read, option
    for step in range(len(views.STEPS)):
        event = events[f"step_{step}"]
        # its views; every control (its own shown, the others taken off the page) and the other steps' views
        others = [name for name in views.all_views() if views.VIEWS[name].step != step]
        assert [names[id(c)] for c in event.outputs] == ["step"] + views.step_views(step) + list(views.CONTROLS) + others
        assert [names[id(c)] for c in event.inputs] == ["key", "source"] + list(ui.reads(views.step_views(step)))
    for api_name in ("select_patch", "class_token"):
        outputs = [names[id(c)] for c in events[api_name].outputs]
        assert outputs == ["selected", "picker", "selection"] + ui.SELECTED_VIEWS
        assert set(ui.SELECTED_VIEWS) == {v for v, spec in views.VIEWS.items() if "selected" in spec.reads}
    analyse = [names[id(c)] for c in events["analyse"].outputs]
    assert analyse == list(ui.HEADER_OUTPUTS) + views.all_views()
    # Every view is on the page once, in its step's tab, in registry order.
    assert all(name in app.components for name in views.VIEWS)


def test_pictures_travel_as_png_when_drawn_and_as_jpeg_when_photographs(tmp_path):
    """PictureView: a drawing (few colours) keeps every pixel (PNG); a photograph (the cat, enlarged like ViT-B/16's
    picker) becomes a JPEG a fraction of the PNG's size that decodes to nearly the same pixels."""
    from PIL import Image

    view = ui.PictureView(format="png", interactive=False)
    view.GRADIO_CACHE = str(tmp_path)
    drawing = np.zeros((448, 448, 3), np.uint8)
    drawing[::32] = 255  # a grid of white lines
    drawing[64:96, 64:68] = (255, 40, 40)  # an outline's edge
    photo = np.asarray(Image.open(ASSETS / "cat_chelsea.jpg").convert("RGB").resize((448, 448)))
    sent = {}
    for name, picture in (("drawing", drawing), ("photo", photo)):
        path = Path(view.postprocess(picture).path)
        sent[name] = (path.suffix, path.stat().st_size, np.asarray(Image.open(path).convert("RGB")).astype(int))
    assert sent["drawing"][0] == ".png" and np.array_equal(sent["drawing"][2], drawing)
    assert sent["photo"][0] == ".jpg"
    assert np.abs(sent["photo"][2] - photo).mean() < 2.0  # quality 92, no chroma subsampling
    lossless = len(zlib.compress(photo.tobytes(), 1))  # what a PNG at level 1 costs at least (its deflate stream)
    assert sent["photo"][1] < lossless / 2
