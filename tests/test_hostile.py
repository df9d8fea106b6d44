"""Hostile and broken files (tests/hostile_files.py), sent through the API (gradio_client) and uploaded in a browser.

For every file: a refused file gets one plain sentence (an AppError from /predict, the same sentence as /analyse's
status); an accepted file gets a result (equal to a direct forward of the stand-in model) and one sentence per
note saying what was done to it; and the next ordinary request still works. The decompression bombs must be refused
without being decoded (the server's memory does not jump), an EXIF-rotated photo must be shown upright, and the
over-limit file must be refused at the upload itself (HTTP 413). The messages are written to
test-artifacts/hostile_messages.json.
"""
from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pytest
from PIL import Image

import hostile_files
from app_server import (REPO, STANDIN_LABEL, AppServer, analyse_outputs, is_one_sentence, open_browser,
                        reference_probabilities)
from explorer.data import FASHION_MNIST_CLASSES

ARTIFACTS = REPO / "test-artifacts"
MESSAGES: dict[str, dict[str, object]] = {}  # file -> {"api": ..., "browser": ...}: the report's table


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    made = hostile_files.make_all(folder)
    made["good.png"] = hostile_files.good_image(folder)
    return made


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app = AppServer(tmp_path_factory.mktemp("hostile_server")).start()
    yield app
    app.stop()
    if MESSAGES:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "hostile_messages.json").write_text(json.dumps(MESSAGES, indent=2, ensure_ascii=False) + "\n")


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    from gradio_client import Client

    c = Client(server.url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))
    yield c
    c.close()


def mentions_all(message: str, words) -> bool:
    """Each item of `words` is an alternative: at least one of them must appear (case-insensitive)."""
    return any(word.lower() in message.lower() for word in words)


def probabilities_of(result: dict) -> np.ndarray:
    got = np.zeros(len(FASHION_MNIST_CLASSES))
    for item in result["top_k"]:
        got[FASHION_MNIST_CLASSES.index(item["label"])] = item["probability"]
    return got


def assert_next_request_works(client, files) -> None:
    from gradio_client import handle_file

    result = client.predict(handle_file(str(files["good.png"])), STANDIN_LABEL, 10, api_name="/predict")
    np.testing.assert_allclose(probabilities_of(result), reference_probabilities(files["good.png"]), atol=2e-6)
    analysed = dict(zip(analyse_outputs(), client.predict(handle_file(str(files["good.png"])), STANDIN_LABEL,
                                                           api_name="/analyse")))
    assert analysed["status"] == "" and "Uploaded 64×64" in analysed["input.normalised"]


def raw_upload(url: str, path) -> httpx.Response:
    with open(path, "rb") as file:
        return httpx.post(url + "gradio_api/upload", files={"files": (path.name, file, "application/octet-stream")},
                          timeout=120)


# ---------------------------------------------------------------------------------------------------------------
# API

@pytest.mark.parametrize("name", hostile_files.NAMES)
def test_api_gives_one_sentence_and_keeps_working(name, files, client, server):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    item = files[name]
    rss_before = server.rss_kb()
    if item.at_upload:
        with pytest.raises(ValueError) as refused:  # gradio_client checks the server's max_file_size first
            client.predict(handle_file(str(item.path)), STANDIN_LABEL, api_name="/predict")
        client_message = str(refused.value)
        response = raw_upload(server.url, item.path)  # and the server refuses the upload itself
        assert response.status_code == 413, (response.status_code, response.text[:200])
        message = response.text.strip().strip('"')
        MESSAGES.setdefault(name, {})["api"] = f"HTTP 413: {message} (gradio_client: {client_message})"
        assert is_one_sentence(message) and mentions_all(message, item.mentions), message
        assert "20971520" in client_message or "20" in client_message
    elif item.accepted:
        result = client.predict(handle_file(str(item.path)), STANDIN_LABEL, 10, api_name="/predict")
        notes = result["notes"]
        MESSAGES.setdefault(name, {})["api"] = " ".join(notes)
        assert notes and all(is_one_sentence(note) for note in notes), notes
        assert mentions_all(" ".join(notes), item.mentions), notes
        np.testing.assert_allclose(probabilities_of(result), reference_probabilities(item.path), atol=2e-6)
        analysed = dict(zip(analyse_outputs(), client.predict(handle_file(str(item.path)), STANDIN_LABEL,
                                                               api_name="/analyse")))
        assert analysed["status"] == "", analysed["status"]
        for note in notes:  # the page shows the same notes under step 0
            assert note in analysed["input.normalised"], analysed["input.normalised"]
    else:
        with pytest.raises(AppError) as refused:
            client.predict(handle_file(str(item.path)), STANDIN_LABEL, api_name="/predict")
        message = str(refused.value)
        MESSAGES.setdefault(name, {})["api"] = message
        assert is_one_sentence(message), message
        assert mentions_all(message, item.mentions), message
        analysed = dict(zip(analyse_outputs(), client.predict(handle_file(str(item.path)), STANDIN_LABEL,
                                                               api_name="/analyse")))
        assert analysed["status"] == f"⚠️ {message}", analysed["status"]
    assert server.alive(), server.log()
    # Nothing was decoded at full size: a 1.6-gigapixel bomb would take over a gigabyte.
    assert server.rss_kb() - rss_before < 300 * 1024, (rss_before, server.rss_kb())
    assert_next_request_works(client, files)


def test_exif_rotation_is_shown_upright(files, client):
    """exif_rotated.jpg is stored 60 x 40 with its top third white and orientation 6: upright it is 40 x 60 with its
    right third white, both in the image the page shows and in what the model sees."""
    from gradio_client import handle_file

    analysed = dict(zip(analyse_outputs(), client.predict(handle_file(str(files["exif_rotated.jpg"].path)),
                                                           STANDIN_LABEL, api_name="/analyse")))
    # An image view travels as an update carrying its alt text (the picture's path is its value).
    analysed = {name: value["value"] if isinstance(value, dict) and "value" in value else value
                for name, value in analysed.items()}
    shown = np.asarray(Image.open(analysed["input.original"]).convert("L"), dtype=np.float64)  # (H, W)
    assert shown.shape == (60, 40), shown.shape
    left, right = shown[:, :10].mean(), shown[:, -10:].mean()
    top, bottom = shown[:10].mean(), shown[-10:].mean()
    assert right > 200 and left < 60, (left, right)
    assert abs(top - bottom) < 30, (top, bottom)  # not white on top: the stored orientation
    seen = np.asarray(Image.open(analysed["input.seen"]).convert("L"), dtype=np.float64)  # picker-scaled 28 x 28
    third = seen.shape[1] // 3
    assert seen[:, -third:].mean() > seen[:, :third].mean() + 100, (seen[:, :third].mean(), seen[:, -third:].mean())


def test_decompression_bomb_is_refused_before_decoding(files, client, server):
    """Sent five times in a row, the 40000 x 40000 bomb costs the server no memory and little time."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    rss_before = server.rss_kb()
    start = time.perf_counter()
    for _ in range(5):
        with pytest.raises(AppError, match="megapixel"):
            client.predict(handle_file(str(files["bomb_40000x40000.png"].path)), STANDIN_LABEL, api_name="/predict")
    assert (time.perf_counter() - start) / 5 < 10
    assert server.rss_kb() - rss_before < 100 * 1024


# ---------------------------------------------------------------------------------------------------------------
# Browser: every file uploaded in one page, each followed by an ordinary image

STATUS = "() => document.querySelector('#status').innerText.trim()"
NOTES = "() => Array.from(document.querySelectorAll('#tab-0 li')).map(e => e.innerText.trim())"
TOASTS = "() => Array.from(document.querySelectorAll('.toast-body')).map(e => e.innerText)"


@pytest.mark.browser
def test_browser_upload_of_every_hostile_file(files, server, tmp_path):
    shots = ARTIFACTS / "browser" / "hostile"
    shots.mkdir(parents=True, exist_ok=True)
    with open_browser(server.url) as session:
        page = session.page
        upload = "#upload input[type=file]"

        def upload_good():
            page.set_input_files(upload, str(files["good.png"]))
            page.wait_for_function("() => document.querySelector('#status').innerText.trim() === '' && "
                                   "Array.from(document.querySelectorAll('#tab-0 p')).some(e => e.innerText.includes('Uploaded 64×64'))",
                                   timeout=60_000)

        upload_good()
        for name in hostile_files.NAMES:
            item = files[name]
            page.evaluate("() => document.querySelectorAll('.toast-body button, .toast-close').forEach(b => b.click())")
            session.expected_errors = ("upload_progress", "Response") if item.at_upload else ()
            page.set_input_files(upload, str(item.path))
            words = json.dumps([w.lower() for w in item.mentions])
            if item.at_upload:
                page.wait_for_function(f"() => ({TOASTS})().some(t => {words}.some(w => t.toLowerCase().includes(w)))",
                                       timeout=30_000)
                toast = next(t for t in page.evaluate(TOASTS) if mentions_all(t, item.mentions))
                message = [line for line in toast.split("\n") if mentions_all(line, item.mentions)][0].strip()
                # Gradio's own message (the browser refuses the file before uploading): one line, one sentence.
                assert "\n" not in message and message.count(". ") == 0, message
            elif item.accepted:
                page.wait_for_function(f"() => ({NOTES})().some(t => {words}.some(w => t.toLowerCase().includes(w)))",
                                       timeout=60_000)
                notes = [n for n in page.evaluate(NOTES) if n != "Nothing else was changed."]
                message = " ".join(notes)
                assert notes and all(is_one_sentence(n) for n in notes), notes
                assert page.evaluate(STATUS) == ""
            else:
                page.wait_for_function(f"() => {words}.some(w => ({STATUS})().toLowerCase().includes(w))", timeout=60_000)
                message = page.evaluate(STATUS)
                assert message.startswith("⚠️") and is_one_sentence(message), message
            MESSAGES.setdefault(name, {})["browser"] = message
            page.screenshot(path=str(shots / f"{name}.png"))
            session.expected_errors = ()
            upload_good()  # the next upload still works
        assert server.alive()
        session.assert_clean()
