"""explorer.survey: each image's numbers against explorer.analysis on its full trace and against hand-computed cases,
the statistics by hand and against scipy, the order of the images, the outputs against independent computations,
resuming after a kill with nothing counted twice, and the errors a user can cause; and benchmarks.survey's smoke tests."""
import contextlib
import io
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import explorer
from explorer import analysis
from explorer import survey as sv
from explorer.config import CONFIGS
from explorer.data import DataError, load_fashion_mnist
from explorer.evaluate import predict
from explorer.explain import faithfulness
from explorer.images import Preprocessing
from explorer.trace import trace
from explorer.weights import ModelBundle, load_checkpoint, save_checkpoint

from survey_data import ROOT, SHIPPED, json_difference, subprocess_env, write_fashion_idx


def run_main(argv):
    """python -m explorer.survey in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = sv.main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def idx(tmp_path_factory):
    return write_fashion_idx(tmp_path_factory.mktemp("fashion"), n_test=64)


@pytest.fixture
def peaked_model(tiny_model):
    """The tiny model with larger query/key weights, so that its attention is far from uniform."""
    with torch.no_grad():
        for block in tiny_model.blocks:
            block.msa.qkv.weight.mul_(4.0)
    return tiny_model


def bundle_of(model, class_names) -> ModelBundle:
    size = model.config.image_hw[0]
    preprocessing = Preprocessing(resize_size=size, crop_size=size, channels=model.config.channels,
                                  mean=(0.5,) * model.config.channels, std=(0.5,) * model.config.channels)
    return ModelBundle(model, preprocessing, list(class_names), "tiny", "test", "a test model")


# ---------------------------------------------------------------------------------------------------------------
# One batch against the analysis functions and by hand

def test_survey_batch_equals_the_analysis_functions_image_by_image(peaked_model):
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    result = sv.survey_batch(peaked_model, x)
    with torch.no_grad():
        assert np.array_equal(result.predictions, peaked_model(x).argmax(-1).numpy())
    spread = []
    for i in range(len(x)):
        t = trace(peaked_model, x[i:i + 1])
        expected = analysis.mean_attention_distance(t, renormalise=True)  # (L, h), pixels
        np.testing.assert_allclose(result.mean_distance[i], expected, atol=1e-5)
        np.testing.assert_allclose(result.rollout[i], analysis.rollout_map(t), atol=1e-5)  # float32 products
        spread.append(expected)
    assert np.ptp(np.array(spread)) > 0.5  # the images' distances differ: the check above compares real values
    # One image alone gives the same numbers as in a batch of six.
    alone = sv.survey_batch(peaked_model, x[2:3])
    np.testing.assert_allclose(alone.mean_distance[0], result.mean_distance[2], atol=1e-5)
    np.testing.assert_allclose(alone.rollout[0], result.rollout[2], atol=1e-5)


def test_survey_record_reduces_attention_as_it_arrives_and_keeps_no_stage(peaked_model):
    record = sv.SurveyRecord(peaked_model.config.grid, peaked_model.config.patch_size, "cpu")
    with torch.no_grad():
        peaked_model(torch.randn(3, 3, 32, 32), record)
    assert len(record) == 0  # no stage stored: memory is one layer's attention at a time
    L, h, T = peaked_model.config.depth, peaked_model.config.heads, peaked_model.config.seq_len
    assert [tuple(d.shape) for d in record.mean_distance] == [(3, h)] * L
    assert [tuple(f.shape) for f in record.head_means] == [(3, T, T)] * L


def test_one_layer_by_hand():
    # A 1x2 grid of 4-pixel patches (N = 2, T = 3), one head. Query patch 0 gives 0.5 to the class token and 0.25 to
    # each patch: renormalised over the patches, half at distance 0 and half at 4 px, so 2 px; patch 1 looks only at
    # itself, 0 px. The mean over the queries is 1 px.
    A = torch.tensor([[[[0.2, 0.6, 0.2], [0.5, 0.25, 0.25], [0.0, 0.0, 1.0]]]])  # (B=1, h=1, T, T)
    record = sv.SurveyRecord((1, 2), 4, "cpu")
    record["blocks.1.attn.weights"] = A
    assert record.mean_distance[0].item() == pytest.approx(1.0)
    # Rollout of one layer: Â = rownorm(A + I); the class token's row is [1.2, 0.6, 0.2] / 2; over the patches
    # [0.3, 0.1], scaled to a maximum of 1: [1, 1/3].
    np.testing.assert_allclose(record.rollout_maps((1, 2)).numpy(), [[[1.0, 1 / 3]]], rtol=1e-6)
    record["blocks.2.attn.weights"] = A  # and of two: the class token's row of Â Â, by hand
    A_hat = (A[0, 0] + torch.eye(3)) / (A[0, 0] + torch.eye(3)).sum(-1, keepdim=True)
    row = (A_hat @ A_hat)[0, 1:]
    np.testing.assert_allclose(record.rollout_maps((1, 2)).numpy()[0, 0], (row / row.max()).numpy(), rtol=1e-6)
    with pytest.raises(AssertionError):
        record["blocks.4.attn.weights"] = A  # layer 3 skipped: the order the model writes in is checked


# ---------------------------------------------------------------------------------------------------------------
# Statistics

def test_t_quantile_against_known_values_and_scipy():
    assert sv.t_quantile(0.975, 1) == pytest.approx(12.7062047, abs=1e-6)  # tables: 12.706, 4.303, 2.262, 2.042
    assert sv.t_quantile(0.975, 2) == pytest.approx(4.30265273, abs=1e-6)
    assert sv.t_quantile(0.975, 9) == pytest.approx(2.26215716, abs=1e-6)
    assert sv.t_quantile(0.975, 30) == pytest.approx(2.04227246, abs=1e-6)
    stats = pytest.importorskip("scipy.stats")
    for df in list(range(1, 41)) + [63, 127, 999, 4000]:
        assert sv.t_quantile(0.975, df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-9), df
    assert sv.t_quantile(0.995, 7) == pytest.approx(stats.t.ppf(0.995, 7), abs=1e-9)


def test_mean_and_interval_by_hand():
    result = sv.mean_and_interval([1.0, 2.0, 3.0, 4.0])
    std = math.sqrt(5 / 3)  # squares of deviations 2.25 + 0.25 + 0.25 + 2.25 = 5, over n - 1 = 3
    half = 3.18244631 * std / 2  # t(0.975, 3) * s / sqrt(4)
    assert result["mean"] == 2.5 and result["n"] == 4 and result["std"] == pytest.approx(std)
    assert result["ci95"] == pytest.approx([2.5 - half, 2.5 + half], abs=1e-7)
    assert sv.mean_and_interval([0.3]) == {"mean": 0.3, "std": None, "ci95": None, "n": 1}


# ---------------------------------------------------------------------------------------------------------------
# Which images, in which order, with which labels

def _write(folder: Path, names: list[str]) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((36, 40, 3), 100 + len(name), dtype=np.uint8)).save(folder / name)


def test_class_folders_are_taken_round_robin_with_labels_from_the_model(tmp_path, tiny_model):
    bundle = bundle_of(tiny_model, ["T-shirt/top", "b", "c"] + [f"x{i}" for i in range(7)])
    _write(tmp_path / "data", ["b/2.jpg", "b/0.jpg", "b/1.png", "T-shirt_top/0.jpg", "c/0.jpg", "c/1.jpg",
                               ".hidden/0.jpg"])
    images = sv.open_images(str(tmp_path / "data"), bundle)
    names = [images.name(i) for i in range(images.count)]
    # sorted classes: T-shirt_top, b, c; first file of each, then the second of each, ...; files sorted by name
    assert names == ["T-shirt_top/0.jpg", "b/0.jpg", "c/0.jpg", "b/1.png", "c/1.jpg", "b/2.jpg"]
    inputs, labels, skipped = images.load(list(range(6)))
    assert [labels[i] for i in range(6)] == [0, 1, 2, 1, 2, 1] and not skipped  # "T-shirt_top" is "T-shirt/top"
    assert inputs[0].shape == (3, 32, 32) and images.class_names == bundle.class_names
    # A class folder the model does not know: no labels, and a sentence that says so.
    _write(tmp_path / "data", ["zebra/0.jpg"])
    images = sv.open_images(str(tmp_path / "data"), bundle)
    assert images.class_names is None and "zebra" in images.notes[0] and "no accuracy" in images.notes[0]


def test_flat_folder_train_test_layout_and_bad_layouts(tmp_path, tiny_model):
    bundle = bundle_of(tiny_model, [f"c{i}" for i in range(10)])
    _write(tmp_path / "flat", ["b.jpg", "a.png", "c.JPG"])
    (tmp_path / "flat" / "notes.txt").write_text("not an image")
    flat = sv.open_images(str(tmp_path / "flat"), bundle)
    assert [flat.name(i) for i in range(flat.count)] == ["a.png", "b.jpg", "c.JPG"] and flat.class_names is None
    _write(tmp_path / "split", ["train/c1/0.jpg", "test/c1/0.jpg", "test/c2/0.jpg"])
    split = sv.open_images(str(tmp_path / "split"), bundle)
    assert [split.name(i) for i in range(split.count)] == ["c1/0.jpg", "c2/0.jpg"]  # the test split
    _write(tmp_path / "mixed", ["a.jpg", "c1/0.jpg"])
    with pytest.raises(DataError, match="both images and class folders"):
        sv.open_images(str(tmp_path / "mixed"), bundle)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        sv.open_images(str(tmp_path / "empty"), bundle)


# ---------------------------------------------------------------------------------------------------------------
# The command on the shipped checkpoint, against independent computations

@pytest.fixture(scope="module")
def shipped_run(tmp_path_factory, idx):
    out = tmp_path_factory.mktemp("survey") / "out"
    argv = ["--model", str(SHIPPED), "--data", "fashion-mnist", "--data-idx", str(idx), "-n", "40",
            "--faithfulness", "3", "--batch-size", "16", "--threads", "1", "--out", str(out)]
    code, stdout, stderr = run_main(argv)
    assert code == 0, stderr
    return {"out": out, "stdout": stdout, "survey": json.loads((out / "survey.json").read_text()),
            "run": json.loads((out / "run.json").read_text())}


def _inputs(bundle, idx, n):
    """The first n test images, each opened as a PIL image and normalised by the checkpoint's recipe (the app's
    path, not the survey's)."""
    test = load_fashion_mnist(idx).test
    x = torch.cat([bundle.preprocessing.normalise(Image.fromarray(image[0].numpy())) for image in test.images[:n]])
    return x, test


def test_survey_numbers_equal_independent_computations(shipped_run, idx):
    survey = shipped_run["survey"]
    bundle = load_checkpoint(SHIPPED)
    x, test = _inputs(bundle, idx, 40)
    traces = [trace(bundle.model, x[i:i + 1]) for i in range(40)]
    distances = np.stack([analysis.mean_attention_distance(t) for t in traces])  # (40, L, h)
    mad = survey["mean_attention_distance"]
    np.testing.assert_allclose(mad["mean"], distances.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(mad["std"], distances.std(axis=0, ddof=1), atol=1e-5)
    np.testing.assert_allclose(mad["layer_mean"], distances.mean(axis=(0, 2)), atol=1e-5)
    rows, cols = np.divmod(np.arange(49), 7)  # attention spread evenly: the mean distance of two of the 7x7 patches
    pairs = 4 * np.hypot(rows[:, None] - rows[None], cols[:, None] - cols[None])
    assert mad["uniform_attention"] == pytest.approx(pairs.mean(), abs=1e-8)
    maps = np.stack([analysis.rollout_map(t) for t in traces])
    np.testing.assert_allclose(survey["rollout"]["mean_map"], maps.mean(axis=0), atol=1e-6)
    # Accuracy: explorer.evaluate's predictions on the same 40 images.
    predictions = predict(bundle.model, test.images[:40], bundle.preprocessing)
    labels = test.labels[:40].numpy()
    accuracy = survey["accuracy"]
    assert accuracy["images"] == 40 and accuracy["correct"] == int((predictions == labels).sum())
    assert sum(c["images"] for c in accuracy["per_class"].values()) == 40
    assert np.array_equal(np.array(accuracy["confusion"]).sum(axis=1), np.bincount(labels, minlength=10))
    for k, name in enumerate(bundle.class_names):
        if (labels == k).any():
            assert accuracy["per_class"][name]["correct"] == int(((predictions == k) & (labels == k)).sum())
    # Faithfulness: explorer.explain.faithfulness on the first 3 images, averaged here.
    areas = [faithfulness(bundle.model, x[i:i + 1], steps=None, seed=i).areas() for i in range(3)]
    for method, stats in survey["faithfulness"]["methods"].items():
        for j, mode in enumerate(("deletion", "insertion")):
            values = [a[method][j] for a in areas]
            assert stats[mode]["mean"] == pytest.approx(np.mean(values), abs=1e-9)
            assert stats[mode]["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-9)
            low, high = stats[mode]["ci95"]
            assert low <= stats[mode]["mean"] <= high
    assert set(survey["faithfulness"]["methods"]) == {"rollout", "relevance", "grad_cam", "attention", "random"}
    # From the weights: E_pos similarity has 1 on its diagonal tiles; 16 components of 4x4x1 filters, largest first.
    similarity = np.array(survey["position_similarity"]["similarity"])  # (7, 7, 7, 7)
    assert similarity.shape == (7, 7, 7, 7)
    np.testing.assert_allclose([similarity[r, c, r, c] for r in range(7) for c in range(7)], 1.0, atol=1e-6)
    np.testing.assert_allclose(similarity, analysis.position_similarity(bundle.model.position_embedding[0].detach(),
                                                                         (7, 7)), atol=1e-7)
    explained = survey["embedding_filters"]["explained_variance_ratio"]
    assert np.array(survey["embedding_filters"]["components"]).shape == (16, 4, 4, 1)
    assert explained == sorted(explained, reverse=True) and sum(explained) == pytest.approx(1.0, abs=1e-6)


def test_survey_outputs_are_complete_and_the_report_self_contained(shipped_run):
    out, survey, run = shipped_run["out"], shipped_run["survey"], shipped_run["run"]
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["accuracy.png", "attention_distance.png", "confusion.png", "embedding_filters.png",
                    "faithfulness.png", "head_importance.png", "position_similarity.png", "rollout.png"]
    assert all((out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    page = (out / "report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == len(pngs) and "http" not in page.replace(
        "http-equiv", "")  # nothing fetched from anywhere
    assert f"{survey['accuracy']['accuracy']:.4f}" in page and "Mean attention distance" in page
    assert not (out / "shards").exists()  # deleted after a complete run
    assert survey["images"] == 40 and survey["settings"] == {"n": 40, "faithfulness_images": 3,
                                                              "faithfulness_steps": None, "head_importance": True}
    assert "Head importance" in page
    assert run["processes"] == 1 and run["images_computed"] == 40 and run["images_resumed"] == 0
    assert "Accuracy" in shipped_run["stdout"]


def test_an_unreadable_file_is_skipped_and_left_out(tmp_path, tiny_model):
    save_checkpoint(tmp_path / "tiny", tiny_model, ["red", "blue"] + [f"x{i}" for i in range(8)],
                    Preprocessing(resize_size=32, crop_size=32, mean=(0.5,) * 3, std=(0.5,) * 3))
    _write(tmp_path / "data", ["red/0.jpg", "red/1.jpg", "blue/0.jpg"])
    (tmp_path / "data" / "blue" / "1.jpg").write_bytes(b"not a jpeg at all")
    code, _, stderr = run_main(["--model", str(tmp_path / "tiny"), "--data", str(tmp_path / "data"),
                                "--faithfulness", "0", "--out", str(tmp_path / "out")])
    assert code == 0, stderr
    survey = json.loads((tmp_path / "out" / "survey.json").read_text())
    assert survey["images"] == 3 and survey["accuracy"]["images"] == 3 and survey["data"]["surveyed"] == 4
    # round-robin over blue, red: blue/0.jpg, red/0.jpg, blue/1.jpg, red/1.jpg
    assert [s["name"] for s in survey["skipped"]] == ["blue/1.jpg"] and survey["skipped"][0]["index"] == 2
    assert "is not an image" in survey["skipped"][0]["reason"]
    assert survey["faithfulness"] is None and not (tmp_path / "out" / "faithfulness.png").exists()


def test_head_importance_is_the_mean_of_each_images_and_can_be_switched_off(tmp_path, tiny_model):
    """The tiny preset on 7 images: the survey's mean and Student-t interval of each head's drop are those of
    explorer.analysis.head_importance image by image; --no-head-importance writes neither numbers nor figure."""
    names = [f"c{i}" for i in range(10)]
    save_checkpoint(tmp_path / "tiny", tiny_model, names, Preprocessing(resize_size=32, crop_size=32,
                                                                        mean=(0.5,) * 3, std=(0.5,) * 3))
    (tmp_path / "data").mkdir()
    for i, pixels in enumerate(np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)):
        Image.fromarray(pixels).save(tmp_path / "data" / f"{i}.png")  # 7 different images
    common = ["--model", str(tmp_path / "tiny"), "--data", str(tmp_path / "data"), "--faithfulness", "0",
              "--batch-size", "3"]  # batches of 3, 3 and 1 image
    code, _, stderr = run_main([*common, "--out", str(tmp_path / "on")])
    assert code == 0, stderr
    importance = json.loads((tmp_path / "on" / "survey.json").read_text())["head_importance"]
    bundle = load_checkpoint(tmp_path / "tiny")
    inputs, _, _ = sv.open_images(str(tmp_path / "data"), bundle).load(list(range(7)))
    drops = np.stack([analysis.head_importance(bundle.model, inputs[i][None]).exact for i in range(7)])  # (7, L, h)
    np.testing.assert_allclose(importance["mean"], drops.mean(axis=0), atol=1e-6)
    half = sv.t_quantile(0.975, 6) * drops.std(axis=0, ddof=1) / math.sqrt(7)
    np.testing.assert_allclose(importance["ci95_high"], drops.mean(axis=0) + half, atol=1e-6)
    np.testing.assert_allclose(importance["std"], drops.std(axis=0, ddof=1), atol=1e-6)
    assert importance["images"] == 7 and np.array(importance["mean"]).shape == (2, 4)
    assert (tmp_path / "on" / "head_importance.png").is_file()
    assert "Head importance" in (tmp_path / "on" / "report.html").read_text()
    code, _, stderr = run_main([*common, "--no-head-importance", "--out", str(tmp_path / "off")])
    assert code == 0, stderr
    survey = json.loads((tmp_path / "off" / "survey.json").read_text())
    assert survey["head_importance"] is None and survey["settings"]["head_importance"] is False
    assert not (tmp_path / "off" / "head_importance.png").exists()


# ---------------------------------------------------------------------------------------------------------------
# Resuming: a killed run, a partial and duplicated shard

def _indices(work: Path) -> list[int]:
    return [json.loads(line)["index"] for path in sorted(work.glob("shard-*.jsonl"))
            for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_a_killed_survey_resumes_with_nothing_counted_twice(tmp_path, idx):
    common = ["--model", str(SHIPPED), "--data", "fashion-mnist", "--data-idx", str(idx), "-n", "16",
              "--faithfulness", "16", "--batch-size", "2", "--threads", "1"]  # faithfulness: about 0.5 s an image
    work = tmp_path / "work"
    process = subprocess.Popen([sys.executable, "-m", "explorer.survey", *common, "--out", str(tmp_path / "killed"),
                                "--work", str(work), "--keep-shards"], cwd=ROOT, env=subprocess_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if (work / "shard-0.jsonl").exists() and len(_indices(work)) >= 6:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL  # killed midway, not finished
    before = _indices(work)
    assert 6 <= len(before) < 16
    with (work / "shard-0.jsonl").open("a") as f:
        f.write('{"index": 15, "label": 3, "predic')  # as if the kill had come in the middle of a write

    code, _, stderr = run_main([*common, "--out", str(tmp_path / "resumed"), "--work", str(work), "--keep-shards"])
    assert code == 0, stderr
    after = _indices(work)
    assert sorted(after) == list(range(16)) and after[:len(before)] == before  # each image once, the old ones kept
    run = json.loads((tmp_path / "resumed" / "run.json").read_text())
    assert run["images_resumed"] == len(before) and run["images_computed"] == 16 - len(before)

    code, _, stderr = run_main([*common, "--out", str(tmp_path / "straight")])
    assert code == 0, stderr
    resumed = json.loads((tmp_path / "resumed" / "survey.json").read_text())
    straight = json.loads((tmp_path / "straight" / "survey.json").read_text())
    assert json_difference(resumed, straight) <= 1e-6


def test_a_partial_and_duplicated_shard_merges_each_image_once(tmp_path, idx):
    common = ["--model", str(SHIPPED), "--data", "fashion-mnist", "--data-idx", str(idx), "-n", "20",
              "--faithfulness", "2", "--steps", "7", "--batch-size", "8", "--threads", "1"]
    assert run_main([*common, "--out", str(tmp_path / "full"), "--keep-shards"])[0] == 0
    lines = (tmp_path / "full" / "shards" / "shard-0.jsonl").read_text().splitlines(keepends=True)
    work = tmp_path / "work"
    work.mkdir()
    (work / "manifest.json").write_bytes((tmp_path / "full" / "shards" / "manifest.json").read_bytes())
    # rank 0 of an earlier run did images 0-9 and wrote image 3 twice; rank 1 holds a wrong second record of image 5
    (work / "shard-0.jsonl").write_text("".join(lines[:10]) + lines[3])
    wrong = json.loads(lines[5])
    wrong["mean_distance"] = [[0.0] * 4] * 6
    (work / "shard-1.jsonl").write_text(json.dumps(wrong) + "\n")
    code, _, stderr = run_main([*common, "--out", str(tmp_path / "resumed"), "--work", str(work)])
    assert code == 0, stderr
    run = json.loads((tmp_path / "resumed" / "run.json").read_text())
    assert run["images_resumed"] == 10 and run["images_computed"] == 10
    full = json.loads((tmp_path / "full" / "survey.json").read_text())
    resumed = json.loads((tmp_path / "resumed" / "survey.json").read_text())
    assert json_difference(full, resumed) <= 1e-6 and resumed["images"] == 20


def test_a_work_folder_of_another_survey_is_refused(tmp_path, idx):
    common = ["--model", str(SHIPPED), "--data", "fashion-mnist", "--data-idx", str(idx), "-n", "8",
              "--threads", "1", "--work", str(tmp_path / "work"), "--keep-shards"]
    assert run_main([*common, "--faithfulness", "0", "--out", str(tmp_path / "a")])[0] == 0
    code, _, stderr = run_main([*common, "--faithfulness", "2", "--out", str(tmp_path / "b")])
    assert code == 2 and "holds the shards of another survey" in stderr and "faithfulness_images" in stderr
    assert not (tmp_path / "b" / "survey.json").exists()


# ---------------------------------------------------------------------------------------------------------------
# Model names and errors

def test_model_names_resolve(tmp_path, monkeypatch, tiny_model):
    untrained = explorer.load("ViT-Tiny-Test/8 · random init")
    assert not untrained.trained and untrained.model.config == CONFIGS["ViT-Tiny-Test/8"]
    shipped = explorer.load("vit_fashion_mnist")  # a stem in the shipped checkpoints
    assert shipped.name == "ViT-Fashion/4" and shipped.trained
    for name in (str(SHIPPED), str(SHIPPED) + ".safetensors", str(SHIPPED) + ".json"):
        assert sv.weights_digest(explorer.load(name).model) == sv.weights_digest(shipped.model)
    save_checkpoint(tmp_path / "mine", tiny_model, [f"c{i}" for i in range(10)], Preprocessing(32, 32))
    monkeypatch.setenv("EXPLORER_CHECKPOINTS", str(tmp_path))
    assert sv.weights_digest(explorer.load("mine").model) == sv.weights_digest(tiny_model)
    assert sv.weights_digest(tiny_model) != sv.weights_digest(shipped.model)


def test_errors_are_one_sentence(tmp_path, monkeypatch, idx):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    cases = [
        (["--model", "ViT-B/16"], "Offline"),
        (["--model", "ViT-B/16 · NOT_A_VARIANT"], "has no weights 'NOT_A_VARIANT'"),
        (["--model", "ViT-Q/9 · random init"], "no preset 'ViT-Q/9'"),
        (["--model", "no_such_model"], "No file or folder at"),
        (["--data", str(tmp_path / "nowhere")], "No folder at"),
        (["--data", "fashion-mnist", "--data-idx", str(tmp_path / "nowhere")], "No folder at"),
        (["-n", "0"], "at least 1"),
    ]
    for argv, message in cases:
        data_idx = [] if "--data-idx" in argv else ["--data-idx", str(idx)]
        code, _, stderr = run_main(argv + data_idx + ["--out", str(tmp_path / "out")])
        assert code == 2 and stderr.startswith("error: ") and message in stderr, (argv, stderr)
        assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "survey.json").exists()


@pytest.mark.slow
def test_bench_reports_one_and_two_processes():
    from benchmarks import survey as survey_bench

    result = survey_bench.bench(batch_size=2, repeats=1, processes=(1, 2), threads=2, model="ViT-B/32")  # fewer tokens
    assert result["model"] == "ViT-B/32 (random weights, 224x224)"
    assert [row["processes"] for row in result["rows"]] == [1, 2]
    for row in result["rows"]:
        assert row["survey_images_per_s"] > 0 and row["torchvision_images_per_s"] > 0
        assert row["ratio"] == pytest.approx(row["survey_images_per_s"] / row["torchvision_images_per_s"], rel=0.01)


def test_memory_benchmark_reads_the_resident_memory_over_a_survey(idx, capsys):
    """`python -m benchmarks.survey --only memory` on a few synthetic images: the figures it prints are the process's
    VmRSS (as /proc/self/status says) after the early batches and after the last one."""
    from benchmarks import survey as survey_bench

    assert survey_bench.main(["--only", "memory", "--images", "40", "--batch-size", "4", "--data-idx", str(idx)]) == 0
    printed = capsys.readouterr().out
    assert "memory, survey of 40 images" in printed and "after 20 images" in printed and "within 10%" in printed
    result = survey_bench.memory(40, batch_size=4, early_batches=2, data_idx=str(idx))
    assert result["images"] == 40 and result["early"]["images"] == 8
    assert 50 < result["early"]["rss_mb"] <= result["peak_rss_mb"] and result["end"]["rss_mb"] <= result["peak_rss_mb"]
    assert result["growth"] == pytest.approx(result["end"]["rss_mb"] / result["early"]["rss_mb"] - 1, abs=1e-3)
