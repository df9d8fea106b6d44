"""Several processes under torchrun on this machine (gloo, loopback, one thread each): a survey split over two
processes gives the JSON of one, and data-parallel training gives the parameters of the single-process run."""
import json

import pytest
import torch
from safetensors.torch import load_file

from explorer.config import CONFIGS
from explorer.model import ViT

from survey_data import SHIPPED, json_difference, run_module, write_fashion_idx

pytestmark = pytest.mark.slow  # each torchrun starts fresh Python processes


def _check(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_survey_with_one_and_two_processes_writes_the_same_json(tmp_path):
    data = write_fashion_idx(tmp_path / "fashion", n_test=64)
    # -n, not --n: torchrun's own parser would read --n as an abbreviation of its --nnodes / --nproc-per-node
    common = ["--model", str(SHIPPED), "--data", "fashion-mnist", "--data-idx", str(data), "-n", "64",
              "--faithfulness", "6", "--batch-size", "16", "--threads", "1"]
    for processes in (1, 2):
        _check(run_module("explorer.survey", [*common, "--out", str(tmp_path / f"p{processes}")], processes))
    one, two = (json.loads((tmp_path / f"p{p}" / "survey.json").read_text()) for p in (1, 2))
    assert json_difference(one, two) <= 1e-6
    assert one["images"] == 64 and one["accuracy"]["images"] == 64 and one["faithfulness"]["images"] == 6
    runs = [json.loads((tmp_path / f"p{p}" / "run.json").read_text()) for p in (1, 2)]
    assert [r["processes"] for r in runs] == [1, 2] and runs[1]["backend"] == "gloo"
    assert runs[1]["images_computed"] == 64  # both processes' shares gathered, none twice
    assert not (tmp_path / "p2" / "shards").exists()


def test_data_parallel_training_equals_one_process(tmp_path):
    from test_train import write_fashion_format

    # 17 training images in global batches of 8: steps of 8, 8 and 1 images. Two processes take rows 0, 2, 4, ... and
    # 1, 3, 5, ... of each: 4 + 4, 4 + 4, and 1 + 0 (the second process's share of the last batch is empty).
    data = write_fashion_format(tmp_path / "data", n_train=17, n_test=9)
    common = ["--data", str(data), "--config", "ViT-Fashion/7", "--epochs", "1", "--batch-size", "8",
              "--crop-padding", "1", "--flip", "0.5", "--threads", "1"]  # with augmentation: the draws must match
    _check(run_module("explorer.train", [*common, "--out", str(tmp_path / "one")]))
    _check(run_module("explorer.train", [*common, "--out", str(tmp_path / "two")], processes=2))
    _check(run_module("explorer.train", [*common, "--out", str(tmp_path / "torchrun_one")], processes=1))
    one, two, torchrun_one = (load_file(str(tmp_path / f"{name}.safetensors"))
                              for name in ("one", "two", "torchrun_one"))
    assert set(one) == set(two)
    assert max((one[k] - two[k]).abs().max().item() for k in one) <= 1e-5
    assert all(torch.equal(one[k], torchrun_one[k]) for k in one)  # one process under torchrun: the plain path
    torch.manual_seed(0)  # the initial weights (explorer.train seeds with --seed 0 before building the model)
    initial = ViT(CONFIGS["ViT-Fashion/7"].replace(num_classes=10)).state_dict()  # Fashion-MNIST's 10 classes
    assert max((one[k] - initial[k]).abs().max().item() for k in one) > 1e-3  # three steps moved the weights
    info_one, info_two = (json.loads((tmp_path / f"{name}.json").read_text())["provenance"] for name in ("one", "two"))
    assert info_two["processes"]["world"] == 2 and info_two["command"].startswith("torchrun --nproc-per-node=2")
    for a, b in zip(info_one["history"], info_two["history"]):  # the epoch's loss and accuracies over all processes
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["train_accuracy"] == b["train_accuracy"] and a["test_accuracy"] == b["test_accuracy"]
    assert "processes" not in info_one  # the single-process JSON is as before
