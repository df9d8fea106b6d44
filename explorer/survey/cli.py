"""The survey's command line, `python -m explorer.survey`: parse the arguments, run the survey in this process's share,
and on rank 0 write its outputs (survey.json, run.json, report.html and the figures) to --out.

    python -m explorer.survey                                      # the shipped model, 128 Fashion-MNIST test images
    python -m explorer.survey --model ViT-B/16 --data photos/ --out surveys/b16
    python -m explorer.survey --model "ViT-B/16 · random init" --data fashion-mnist --n 64
    torchrun --standalone --nproc-per-node=2 -m explorer.survey --n 10000 --out surveys/fashion

The shards (explorer.survey.shards) are deleted after a complete run (--keep-shards keeps them: a later run with a
larger --n then only computes the new images). survey.json does not depend on the number of processes; what does
(processes, time, images per second) is in run.json.
"""
from __future__ import annotations

import argparse
import datetime
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

from .. import distributed
from ..data import DataError
from ..explain import ALL_POINTS_UP_TO, DEFAULT_STEPS
from ..families import load
from ..weights import WeightsUnavailable
from .images import open_images
from .records import faithfulness_steps
from .report import write_outputs
from .shards import check_manifest, survey_images, weights_digest
from .summary import SURVEY_FORMAT, SurveyError, summarise

DESCRIPTION = ("python -m explorer.survey: the paper's analyses over many images, the model's accuracy, and how "
               "faithful each explanation is; written as JSON, PNG figures and one self-contained HTML report.")
DEFAULT_MODEL = "vit_fashion_mnist"  # the shipped checkpoint
PAPER_IMAGES = 128  # "averaged over 128 example images" (App. D.7)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m explorer.survey", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="a checkpoint (stem or file), a model folder or Hub id, a torchvision preset ('ViT-B/16', "
                        "'ViT-B/16 · IMAGENET1K_SWAG_E2E_V1') or an untrained one ('ViT-B/16 · random init'); "
                        f"default: the shipped {DEFAULT_MODEL}")
    p.add_argument("--data", default="fashion-mnist",
                   help="'fashion-mnist' (its test set) or a folder: DIR/<class>/*.jpg or DIR/*.jpg")
    p.add_argument("--data-idx", default=None,
                   help="folder of Fashion-MNIST's IDX files (default: the Debian package's)")
    p.add_argument("--n", "-n", "--images", dest="n", type=int, default=PAPER_IMAGES,
                   help=f"images: the first N (default {PAPER_IMAGES}, as the paper). Under torchrun write -n or "
                        f"--images: torchrun's own parser takes --n for an abbreviation of its --nnodes")
    p.add_argument("--out", default="survey", help="output folder (survey.json, run.json, report.html, figures)")
    p.add_argument("--work", default=None, help="folder of the per-image shards (default: OUT/shards)")
    p.add_argument("--keep-shards", action="store_true", help="keep the shards after a complete run")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward (per process)")
    p.add_argument("--faithfulness", type=int, default=16, metavar="K",
                   help="deletion and insertion areas for the first K images (0: none; each costs many forwards)")
    p.add_argument("--head-importance", action=argparse.BooleanOptionalAction, default=True,
                   help="what each head is worth for the top class, per image (about h(L+1)/2 forwards an image: "
                        "14 for the shipped model, 78 for ViT-B/16); --no-head-importance skips it")
    p.add_argument("--steps", type=int, default=None,
                   help=f"points on each faithfulness curve (default: every patch count up to "
                        f"{ALL_POINTS_UP_TO} patches, else {DEFAULT_STEPS})")
    p.add_argument("--device", default="auto", help="auto (cuda if there is a GPU), cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run_survey(args, argv)
    except (DataError, SurveyError, WeightsUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted: the images done so far are in the shards; run the same command again to resume.",
              file=sys.stderr)
        return 130
    return 0


def run_survey(args, argv: list[str] | None = None, after_batch=None) -> dict | None:
    """The survey as `args` say, in this process's share; rank 0 returns the paths it wrote, others None.
    `after_batch` is called with each batch's records (a benchmark's probe)."""
    processes = distributed.start(args.device)
    try:
        result = _run(args, processes, argv, after_batch)
    except BaseException:
        distributed.abandon(processes)  # no last barrier: the other processes may never reach it
        raise
    distributed.finish(processes)
    return result


def _run(args, processes: distributed.Processes, argv, after_batch) -> dict | None:
    if args.n < 1 or args.batch_size < 1 or args.faithfulness < 0:
        raise SurveyError(f"--n and --batch-size must be at least 1 and --faithfulness at least 0 (got {args.n}, "
                          f"{args.batch_size}, {args.faithfulness}).")
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.time()
    out = Path(args.out)
    work = Path(args.work) if args.work else out / "shards"
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SurveyError(f"Can't create the folder {work} ({error.strerror}); choose another --out or "
                          f"--work.") from None
    bundle = load(args.model, processes.device)  # any name explorer.load takes
    images = open_images(args.data, bundle, args.data_idx)
    n = min(args.n, images.count)
    classifier = bundle.model.config.has_classifier  # a backbone: no class to score, explain or importance-rank
    faithfulness_images = min(args.faithfulness, n) if classifier else 0
    heads = args.head_importance and classifier
    steps = faithfulness_steps(bundle.model, args.steps)
    digest = weights_digest(bundle.model)
    check_manifest(work, {"format": SURVEY_FORMAT, "model": f"{bundle.name} · {bundle.weights}", "digest": digest,
                          "data": images.description, "faithfulness_images": faithfulness_images,
                          "faithfulness_steps": steps, "head_importance": heads})

    records, work_done = survey_images(bundle.model, images, n, work, processes, args.batch_size,
                                       faithfulness_images, steps, after_batch, heads)
    if not processes.main:
        return None
    settings = {"n": n, "faithfulness_images": faithfulness_images, "faithfulness_steps": steps,
                "head_importance": heads, "digest": digest}
    survey = summarise(records, bundle, images, settings)
    computed, compute_s = work_done["computed"], work_done["compute_s"]
    arguments = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    launcher = f"torchrun --nproc-per-node={processes.world}" if processes.distributed else "python"
    run = {
        "command": f"{launcher} -m explorer.survey {arguments}",
        "processes": processes.world,
        "backend": processes.backend or "none (one process)",
        "device": str(processes.device),
        "threads_per_process": torch.get_num_threads(),
        "images_resumed": n - computed,
        "images_computed": computed,
        "compute_s": round(compute_s, 2),
        "images_per_s": round(computed / compute_s, 2) if compute_s > 0 and computed else None,
        "total_s": round(time.time() - start, 2),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }
    paths = write_outputs(survey, run, out)
    if not args.keep_shards:
        shutil.rmtree(work, ignore_errors=True)
    print(f"Survey of {n:,} images written to {out}: survey.json, report.html and {len(paths) - 3} figures "
          f"({run['total_s']:.0f} s, {processes.world} process{'es' if processes.world > 1 else ''}).", flush=True)
    if not classifier:
        print(survey["notes"][0], flush=True)
    elif survey["accuracy"]:
        print(f"Accuracy {survey['accuracy']['accuracy']:.4f} ({survey['accuracy']['correct']:,} / "
              f"{survey['accuracy']['images']:,})", flush=True)
    return paths
