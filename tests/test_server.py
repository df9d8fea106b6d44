"""explorer.app.server (with registry.py and cache.py): the model menu, the bounded thread-safe trace cache, the run counter, and predict.

Models are tiny: a stand-in Fashion-MNIST checkpoint (ViT-Fashion/4, random weights) and a ViT-Tiny-Test/8 checkpoint,
both written into a tmp folder with explorer.weights.save_checkpoint. Nothing is downloaded (EXPLORER_OFFLINE=1).
"""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from explorer import CONFIGS, ViT
from explorer.data import FASHION_MNIST_CLASSES
from explorer.images import ImageError, Preprocessing, open_image
from explorer.app.cache import TraceCache
from explorer.app.registry import TABLE_1, ModelSpec, UnknownModel, untrained_label
from explorer.app.server import USER_ERRORS, Server, TraceExpired, image_sha256
from explorer.app.settings import configure_threads
from explorer.weights import UNTRAINED, UNTRAINED_NOTE, WeightsUnavailable, load_checkpoint, random_bundle, save_checkpoint, weight_variants, weights_enum

FASHION = "ViT-Fashion/4 · vit_fashion_test"
TINY = "ViT-Tiny-Test/8 · vit_tiny_test"


def _model(preset: str, seed: int) -> ViT:
    torch.manual_seed(seed)
    model = ViT(CONFIGS[preset]).eval()
    with torch.no_grad():  # a random head, so predictions differ between images
        model.head.weight.normal_(std=0.5)
        model.head.bias.normal_(std=0.5)
    return model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    fashion = Preprocessing(resize_size=28, crop_size=28, channels=1, mean=(0.286,), std=(0.353,), invert="auto")
    save_checkpoint(folder / "vit_fashion_test", _model("ViT-Fashion/4", 1), FASHION_MNIST_CLASSES, fashion,
                    {"dataset": "Fashion-MNIST (stand-in)", "test_accuracy": 0.5})
    tiny = Preprocessing(resize_size=36, crop_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    save_checkpoint(folder / "vit_tiny_test", _model("ViT-Tiny-Test/8", 2), [f"class {i}" for i in range(10)], tiny)
    (folder / "broken.json").write_text("{not json")  # skipped, with a note, not fatal
    return folder


@pytest.fixture
def session(checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # nothing cached
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    monkeypatch.delenv("SPACE_ID", raising=False)
    return Server(checkpoint_dir=checkpoints, device="cpu", max_entries=4, max_bytes=64 * 2**20)


def _photo(seed: int, size=(40, 30)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


# ---------------------------------------------------------------------------------------------------------------
# The menu

def test_menu_lists_checkpoints_every_torchvision_variant_and_untrained_table_1(session):
    labels = session.registry.labels()
    assert labels[:2] == [FASHION, TINY]  # checkpoints first, sorted by file name
    for preset in TABLE_1:
        for variant in weight_variants(preset):
            assert f"{preset} · {variant}" in labels
        assert untrained_label(preset) in labels
    assert any("broken.json" in problem for problem in session.registry.problems)
    random_b16 = session.registry.resolve(untrained_label("ViT-B/16"))
    assert "meaningless" in random_b16.menu_text and "shapes are real" in random_b16.menu_text


def test_resolve_accepts_short_names(session):
    registry = session.registry
    assert registry.resolve("vit_fashion_test").label == FASHION
    assert registry.resolve("  vit-tiny-test/8 · VIT_TINY_TEST ").label == TINY
    assert registry.resolve("ViT-L/16").variant == weights_enum("ViT-L/16").DEFAULT.name
    with pytest.raises(ValueError, match="no model called"):
        registry.resolve("ResNet-50")


def test_default_model_follows_cache_and_space(session, monkeypatch, tmp_path):
    registry = session.registry
    assert registry.default_label() == FASHION  # offline, nothing cached: the shipped model
    assert "EXPLORER_OFFLINE" in registry.availability_note()
    # The note is about the weights only: it is shown whichever model is in use, so it names none as the one used.
    note = registry.availability_note()
    assert " is used" not in note and "in use" not in note and "Fashion-MNIST" not in note
    monkeypatch.setenv("SPACE_ID", "someone/vit-explorer")
    assert registry.default_label() == FASHION  # a Space that is offline still can't download
    monkeypatch.delenv("EXPLORER_OFFLINE")
    assert registry.default_label() == "ViT-B/16 · google/vit-base-patch16-224"  # the paper's own (tests/test_menu.py)
    assert registry.availability_note() == ""
    monkeypatch.delenv("SPACE_ID")
    assert registry.default_label() == FASHION
    from explorer.weights import cache_path, get_weights

    path = cache_path(get_weights("ViT-B/16", "IMAGENET1K_V1"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")  # is_cached looks for the file only
    assert registry.default_label() == "ViT-B/16 · IMAGENET1K_V1"


def test_offline_pretrained_is_one_sentence_and_the_session_keeps_working(session):
    with pytest.raises(WeightsUnavailable) as error:
        session.analyse(_photo(0), "ViT-B/16 · IMAGENET1K_V1")
    message = str(error.value)
    assert "\n" not in message and message.endswith(".") and "offline" in message.lower()
    assert session.runs == 0
    entry = session.analyse(_photo(0), FASHION)
    assert entry.trace.probabilities.shape == (10,) and session.entry(entry.key) is entry


def test_image_errors_are_one_sentence(session, tmp_path):
    fake = tmp_path / "letter.png"
    fake.write_text("Dear reader, this is not a picture.\n")
    with pytest.raises(ImageError) as error:
        session.analyse(fake, FASHION)
    assert "not an image" in str(error.value) and "\n" not in str(error.value)
    assert session.runs == 0


# ---------------------------------------------------------------------------------------------------------------
# Runs and the cache

def test_the_model_runs_once_per_image_model_and_device(session, tmp_path):
    picture = _photo(1)
    path = tmp_path / "picture.png"
    picture.save(path)
    entry = session.analyse(path, FASHION)
    assert session.runs == 1
    assert entry.key == (image_sha256(picture), FASHION, "cpu")
    assert session.analyse(picture, FASHION) is entry  # the same pixels from PIL: no new run
    assert session.analyse(path.read_bytes(), "vit_fashion_test") is entry
    assert session.runs == 1
    session.analyse(path, TINY)  # another model: a new run
    session.analyse(_photo(2), FASHION)  # another image: a new run
    assert session.runs == 3
    assert session.stats()["model_runs"] == 3 and session.stats()["cache_entries"] == 3


def test_entry_holds_what_the_views_need(session):
    entry = session.analyse(_photo(3, (64, 48)), TINY)
    assert entry.config == CONFIGS["ViT-Tiny-Test/8"]
    assert entry.seen.size == (32, 32) and entry.original.size == (64, 48)
    assert entry.trained and entry.spec.kind == "checkpoint"
    assert tuple(entry.projection_weight.shape) == (32, 3, 8, 8)
    L = entry.config.depth
    assert entry.logit_lens.probabilities.shape == (L + 1, 10)
    # The lens's last row is the model's own prediction (Eq. 4 on z_L^0).
    np.testing.assert_allclose(entry.logit_lens.probabilities[-1], entry.trace.probabilities.numpy(), atol=1e-6)


def test_predict_agrees_with_a_direct_forward(session, checkpoints):
    picture = _photo(4, (50, 70))
    result = session.predict(picture, "vit_tiny_test", k=5)
    bundle = load_checkpoint(checkpoints / "vit_tiny_test")
    with torch.no_grad():
        probabilities = bundle.model(bundle.preprocessing(open_image(picture).image)).softmax(-1)[0]
    top = probabilities.topk(5)
    assert [r["label"] for r in result["top_k"]] == [bundle.class_names[i] for i in top.indices.tolist()]
    np.testing.assert_allclose([r["probability"] for r in result["top_k"]], top.values.numpy(), atol=1e-5)
    assert result["model"] == TINY and result["trained"] is True
    import json

    json.dumps(result)  # JSON-able


def test_predict_on_a_fashion_image_inverts_light_backgrounds(session, checkpoints):
    white = Image.new("RGB", (60, 60), (255, 255, 255))
    white.paste((20, 20, 20), (20, 10, 40, 50))  # a dark object on white
    result = session.predict(white, FASHION)
    assert any("inverted" in note for note in result["notes"])
    bundle = load_checkpoint(checkpoints / "vit_fashion_test")
    x = bundle.preprocessing(white)
    assert x[0, 0, 0, 0] < 0  # the white border became black, below the mean
    with torch.no_grad():
        expected = bundle.model(x).softmax(-1)[0].max().item()
    assert result["top_k"][0]["probability"] == pytest.approx(expected, abs=1e-5)


def test_cache_is_bounded_by_count_lru_first():
    class Fake:
        def __init__(self, size):
            self.size = size

        def nbytes(self):
            return self.size

    cache = TraceCache(max_entries=2, max_bytes=10**9)
    cache.get_or_compute("a", lambda: Fake(1))
    cache.get_or_compute("b", lambda: Fake(1))
    cache.get_or_compute("a", lambda: pytest.fail("a is cached"))  # touch a: b is now the oldest
    cache.get_or_compute("c", lambda: Fake(1))
    assert cache.keys() == ["a", "c"] and cache.evictions == 1
    assert (cache.hits, cache.misses) == (1, 3)


def test_cache_is_bounded_by_bytes_but_keeps_the_newest():
    class Fake:
        def __init__(self, size):
            self.size = size

        def nbytes(self):
            return self.size

    cache = TraceCache(max_entries=10, max_bytes=100)
    cache.get_or_compute("a", lambda: Fake(60))
    cache.get_or_compute("b", lambda: Fake(30))
    assert cache.keys() == ["a", "b"] and cache.nbytes() == 90
    cache.get_or_compute("c", lambda: Fake(30))  # 120 > 100: a goes
    assert cache.keys() == ["b", "c"]
    cache.get_or_compute("huge", lambda: Fake(500))  # larger than the bound on its own: kept, alone
    assert cache.keys() == ["huge"]


def test_real_traces_are_counted_in_bytes(session):
    entry = session.analyse(_photo(5), FASHION)
    assert entry.nbytes() >= entry.trace.nbytes() > 0
    assert session.cache.nbytes() == entry.nbytes()


def test_concurrent_requests_for_one_image_run_the_model_once(session):
    picture = _photo(6)
    barrier = threading.Barrier(8)
    keys, errors = [], []

    def worker():
        try:
            barrier.wait()
            keys.append(session.analyse(picture, FASHION).key)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(keys)) == 1 and len(keys) == 8
    assert session.runs == 1


def test_concurrent_different_images_stay_within_bounds(session):
    errors = []

    def worker(seed):
        try:
            for i in range(3):
                entry = session.analyse(_photo(100 + 10 * seed + i), FASHION if i % 2 else TINY)
                assert entry.trace.probabilities.shape == (10,)  # the entry computed, whatever was evicted since
        except Exception as error:  # pragma: no cover
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert session.runs == 12
    assert len(session.cache) <= session.cache.max_entries


def test_waiters_get_the_same_error_as_the_one_computing():
    cache = TraceCache()
    started, release = threading.Event(), threading.Event()
    calls, outcomes = [], []

    def compute():
        calls.append(1)
        started.set()
        release.wait(5)
        raise RuntimeError("boom")

    def owner():
        try:
            cache.get_or_compute("k", compute)
        except RuntimeError as error:
            outcomes.append(str(error))

    def waiter():
        started.wait(5)
        try:
            cache.get_or_compute("k", compute)
        except RuntimeError as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=owner), threading.Thread(target=waiter)]
    for t in threads:
        t.start()
    started.wait(5)
    release.set()
    for t in threads:
        t.join()
    assert len(calls) == 1 and outcomes == ["boom", "boom"]
    assert len(cache) == 0


def test_an_evicted_entry_is_traced_again_from_its_upload_else_a_typed_error(session, tmp_path):
    upload = tmp_path / "upload.png"
    _photo(7).save(upload)
    first = session.analyse(upload, FASHION)
    for seed in range(8, 8 + session.cache.max_entries):
        session.analyse(_photo(seed), FASHION)
    assert first.key not in session.cache
    runs = session.runs
    again = session.entry(first.key, (str(upload), FASHION))  # the server's job: trace the upload again
    assert session.runs == runs + 1 and again.key == first.key and again is not first
    torch.testing.assert_close(again.trace.probabilities, first.trace.probabilities)
    for seed in range(20, 20 + session.cache.max_entries):
        session.analyse(_photo(seed), FASHION)
    upload.unlink()  # Gradio's clean-up removed the upload: nothing to trace again
    for source in ((str(upload), FASHION), None):
        with pytest.raises(TraceExpired, match="upload it again"):
            session.entry(first.key, source)
    with pytest.raises(TraceExpired):
        session.entry(None)
    assert TraceExpired in USER_ERRORS


def test_an_unknown_model_is_a_typed_error_that_lists_the_choices(session):
    with pytest.raises(UnknownModel, match="choose one of") as error:
        session.analyse(_photo(0), "ViT-Z/99")
    assert UnknownModel in USER_ERRORS and FASHION in str(error.value) and "\n" not in str(error.value)


# ---------------------------------------------------------------------------------------------------------------
# The untrained twin, per-model views, threads

def test_untrained_feature_maps_are_a_seed_0_model_of_the_same_config(session):
    entry = session.analyse(_photo(9), FASHION)
    maps = entry.untrained()
    twin = random_bundle("ViT-Fashion/4", seed=0).model  # the menu's way of making an untrained model
    with torch.no_grad():
        expected = twin.patch_embedding.projection(entry.trace["input.pixels"].unsqueeze(0))[0].numpy()
    np.testing.assert_allclose(maps, expected, atol=1e-6)
    trained = entry.trace["embed.feature_maps"].numpy()
    assert maps.shape == trained.shape == (96, 7, 7)
    assert not np.allclose(maps, trained)
    assert (session.runs, session.untrained_runs) == (1, 1)
    entry.untrained()
    assert session.untrained_runs == 1  # cached on the entry


def test_random_models_have_no_untrained_twin_and_say_so(session):
    assert session.registry.resolve(untrained_label("ViT-B/32")).kind == "untrained"
    # The menu's untrained models are Table 1's (86M+ parameters); the same path on the tiny preset:
    spec = ModelSpec(untrained_label("ViT-Tiny-Test/8"), "untrained", "ViT-Tiny-Test/8", description=UNTRAINED_NOTE)
    session.registry.specs[spec.label] = spec
    entry = session.analyse(_photo(10), spec.label)
    assert entry.untrained is None and not entry.trained and entry.weights == UNTRAINED
    assert entry.config.grid == (4, 4) and entry.trace.probabilities.shape == (10,)
    torch.manual_seed(0)
    expected = ViT(CONFIGS["ViT-Tiny-Test/8"]).eval()  # random_bundle's seed 0
    np.testing.assert_allclose(entry.projection_weight, expected.patch_embedding.projection.weight.detach())


def test_per_model_views_are_shared_between_images(session):
    a = session.analyse(_photo(11), FASHION)
    b = session.analyse(_photo(12), FASHION)
    calls = []
    value = a.cached("weights-only", lambda: calls.append(1) or "v", per_model=True)
    assert b.cached("weights-only", lambda: calls.append(1) or "w", per_model=True) == value == "v"
    assert calls == [1]


def test_loaded_models_are_bounded(checkpoints, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    session = Server(checkpoint_dir=checkpoints, device="cpu", max_models=1)
    first = session.registry.get(FASHION)
    assert session.registry.get("vit_fashion_test") is first
    session.registry.get(TINY)
    assert session.registry.loaded(TINY) and not session.registry.loaded(FASHION)
    assert session.registry.loads == 2


def test_configure_threads():
    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1
    finally:
        torch.set_num_threads(before)


def test_the_untrained_twin_is_made_once_when_prefetched_and_asked_for_at_once(session):
    entry = session.analyse(_photo(13), FASHION)
    thread = session.prefetch_untrained(entry)
    maps = entry.untrained()  # while the prefetch may still be running
    thread.join()
    assert session.untrained_runs == 1 and entry.untrained() is maps
    assert session.prefetch_untrained(entry) is None  # nothing left to do


def test_derived_arrays_count_towards_the_bytes(session):
    entry = session.analyse(_photo(14), FASHION)
    before = entry.nbytes()
    entry.cached("pair", lambda: (np.zeros(1000, np.float32), torch.zeros(500)))
    entry.cached("dict", lambda: {"a": np.zeros(250, np.float64)})
    assert entry.nbytes() == before + 4000 + 2000 + 2000


def test_an_evicted_entry_is_freed_at_once_without_the_garbage_collector(session, tmp_path):
    """No reference cycle between an entry and what it holds: with the cyclic collector off, the entry, its trace,
    its tensors and its derived views die the moment the cache evicts it, after every view of every step (step 5's
    explanations run the model again; step 1 makes the untrained twin) was drawn from it."""
    import gc
    import weakref

    from explorer.app import views

    upload = tmp_path / "upload.png"
    _photo(30).save(upload)
    gc.collect()
    gc.disable()
    try:
        entry = session.analyse(upload, FASHION)
        session.prefetch_untrained(entry).join()
        views.render_views(entry, views.all_views(), views.Options())
        entry.run_model("test", lambda model, x: model(x))
        assert session.explain_runs and session.untrained_runs == 1 and len(entry.memo) > 10
        dead = [weakref.ref(entry), weakref.ref(entry.trace), weakref.ref(entry.memo)]
        dead += [weakref.ref(t) for t in entry.trace.stages.values()]
        dead += [weakref.ref(v) for v in entry.memo.values() if isinstance(v, np.ndarray)]
        key = entry.key
        del entry
        assert all(ref() is not None for ref in dead)  # the cache holds it
        for seed in range(31, 31 + session.cache.max_entries):
            session.analyse(_photo(seed), FASHION)
        assert key not in session.cache
        assert [ref for ref in dead if ref() is not None] == []
        # The same for a model the registry lets go of (max_models), and its per-model memo's views.
        registry = session.registry
        registry.max_models = registry._loaded.max_entries = 1
        model = weakref.ref(registry.get(FASHION).model)
        registry.get(TINY)
        assert not registry.loaded(FASHION) and model() is None
    finally:
        gc.enable()


def test_memo_computes_once_per_key_while_other_keys_are_served():
    from explorer.memo import Memo

    memo = Memo(max_entries=2)
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow():
        calls.append("slow")
        started.set()
        release.wait(5)
        return "s"

    threads = [threading.Thread(target=memo.get_or_compute, args=("slow", slow)) for _ in range(3)]
    for t in threads:
        t.start()
    started.wait(5)
    assert memo.get_or_compute("fast", lambda: "f") == "f"  # not blocked by the key being computed
    release.set()
    for t in threads:
        t.join()
    assert calls == ["slow"] and memo.get_or_compute("slow", slow) == "s"
    # A compute that asks for its own key (a recursion) gets a value, uncached, instead of waiting on itself.
    assert memo.get_or_compute("self", lambda: memo.get_or_compute("self", lambda: 1) + 1) == 2
    # A failed compute leaves no cycle behind either: what it held is freed with the error, collector off.
    import gc
    import weakref

    class Held:
        pass

    held = Held()
    gone = weakref.ref(held)

    def fail(held=held):
        raise RuntimeError("no")

    gc.disable()
    try:
        try:
            memo.get_or_compute("fails", fail)
        except RuntimeError:
            pass
        del fail, held
        assert gone() is None and "fails" not in memo
    finally:
        gc.enable()


# ---------------------------------------------------------------------------------------------------------------
# The memory guard

def test_an_analysis_that_does_not_fit_is_refused_before_loading_and_names_a_model_that_does(checkpoints, tmp_path,
                                                                                           monkeypatch):
    from explorer.app import memory
    from explorer.app.server import NotEnoughMemory
    from explorer.app.settings import Settings

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    resident = memory.resident_bytes() // 2**20
    b16_needs = memory.needed(CONFIGS["ViT-B/16"], loaded=False) // 2**20  # about 500 MB
    assert memory.needed(CONFIGS["ViT-Tiny-Test/8"], loaded=False) < 2**20 * 10
    # An artificial limit: this process plus 200 MB, room for the tiny model but not for an untrained ViT-B/16.
    assert b16_needs > 300
    session = Server(Settings.from_env(checkpoint_dir=checkpoints, memory_mb=resident + 200), device="cpu")
    b16 = untrained_label("ViT-B/16")
    with pytest.raises(NotEnoughMemory) as refused:
        session.analyse(_photo(0), b16)
    message = str(refused.value)
    assert "\n" not in message and message.endswith(".") and b16 in message and "224×224" in message
    assert "choose a smaller model such as" in message
    assert NotEnoughMemory in USER_ERRORS
    assert not session.registry.loaded(b16) and session.runs == 0 and session.stats()["memory_refusals"] == 1
    entry = session.analyse(_photo(0), TINY)  # what fits still works, on the same server
    assert entry.trace.probabilities.shape == (10,) and session.runs == 1


def test_the_estimate_counts_the_trace_it_will_keep(session):
    from explorer.app import memory

    entry = session.analyse(_photo(3), TINY)
    # The trace's own size against the estimate of it, from the shapes alone: within the slack the guard adds.
    assert entry.trace.nbytes() <= memory.trace_bytes(entry.config) <= 2 * entry.trace.nbytes()
    h14 = CONFIGS["ViT-H/14"].replace(image_size=518)
    weights = memory.FLOAT_BYTES * memory.parameters(h14)
    assert 2.3 * 2**30 < weights < 2.4 * 2**30  # ViT-H/14: 632M parameters, 2.53 GB
    assert memory.needed(h14, loaded=False) > weights + memory.trace_bytes(h14) > memory.needed(h14, loaded=True)


def test_heavy_analyses_queue_one_at_a_time(checkpoints, tmp_path, monkeypatch):
    """With every analysis counted as heavy (EXPLORER_HEAVY_MB=0), eight visitors at once trace one at a time."""
    import importlib

    from explorer.app.settings import Settings

    trace_module = importlib.import_module("explorer.trace")  # the server calls it as tracing.trace (deferred)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    active, most = [0], [0]
    guard = threading.Lock()
    real_trace = trace_module.trace

    def counting_trace(*args, **kwargs):
        with guard:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            threading.Event().wait(0.05)  # long enough for the others to arrive
            return real_trace(*args, **kwargs)
        finally:
            with guard:
                active[0] -= 1

    monkeypatch.setattr(trace_module, "trace", counting_trace)
    for heavy_mb, expected in ((0, 1), (10**6, 2)):
        session = Server(Settings.from_env(checkpoint_dir=checkpoints, heavy_mb=heavy_mb), device="cpu")
        session.registry.get(FASHION)
        most[0] = 0
        threads = [threading.Thread(target=session.analyse, args=(_photo(200 + i), FASHION)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert session.runs == 8
        assert (most[0] == 1) if expected == 1 else (most[0] >= 2), (heavy_mb, most[0])


def test_a_heavy_analysis_is_checked_again_at_its_turn_against_what_the_process_holds(checkpoints, tmp_path,
                                                                                      monkeypatch):
    """The guard reads the process's resident memory when a queued heavy analysis gets its turn: memory taken
    meanwhile (here 300 MB, as the analysis before it would keep) refuses it, though its estimate fit when it came."""
    from explorer.app import memory
    from explorer.app.server import NotEnoughMemory
    from explorer.app.settings import Settings

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    settings = Settings.from_env(checkpoint_dir=checkpoints, heavy_mb=0,
                                 memory_mb=memory.resident_bytes() // 2**20 + 200)
    session = Server(settings, device="cpu")
    session.registry.get(TINY)
    checks, real_available = [], memory.available
    monkeypatch.setattr(memory, "available", lambda limit: checks.append(1) or real_available(limit))
    outcome = []

    def visitor():
        try:
            outcome.append(session.analyse(_photo(40), TINY))
        except NotEnoughMemory as error:
            outcome.append(error)

    with session._heavy:  # another heavy analysis is running
        thread = threading.Thread(target=visitor)
        thread.start()
        while len(checks) < 2:  # admitted by its estimate (before and after loading), now waiting for its turn
            threading.Event().wait(0.01)
        held = np.ones(300 * 2**20 // 8)  # touched: resident
    thread.join()
    assert isinstance(outcome[0], NotEnoughMemory) and len(checks) >= 3
    assert session.runs == 0 and session.stats()["memory_refusals"] == 1
    del held
    entry = session.analyse(_photo(40), TINY)  # once that memory is free again, the same analysis is admitted
    assert entry.trace.probabilities.shape == (10,) and session.runs == 1
    stats = session.stats()
    assert stats["rss_bytes"] > stats["cache_bytes"] > 0  # /stats: what the process holds beside the cache's bytes
