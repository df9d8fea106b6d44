"""The paper's analyses over many images, the model's accuracy and how faithful each explanation is, written as JSON,
PNG figures and one self-contained HTML report (`python -m explorer.survey`; see explorer.survey.cli).

One job a module, in the order a survey runs:
    images      the image sets and their order (which are "the first N"), with labels where known
    records     one batch: a forward whose record reduces each layer's attention (explorer.analysis), then
                per-image records
    shards      the records on disk to resume from, split and merged over torchrun's processes
    statistics  means, spreads and Student-t confidence intervals
    summary     survey.json's content from the records
    figures     the PNG figures (matplotlib, object-oriented)
    report      survey.json, run.json, the figures and report.html in the output folder
    cli         the command line
"""
from .cli import DEFAULT_MODEL, PAPER_IMAGES, main, parse_args, run_survey
from .figures import (accuracy_figure, distance_figure, faithfulness_figure, filters_figure, head_importance_figure,
                      position_figure, rollout_figure, write_figures)
from .images import FashionImages, FolderImages, Images, open_images
from .records import BatchResult, SurveyRecord, faithfulness_steps, image_records, survey_batch
from .report import report_html, write_outputs
from .shards import Shard, check_manifest, read_shards, survey_images, weights_digest
from .statistics import mean_and_interval, t_quantile
from .summary import FILTER_COMPONENTS, SURVEY_FORMAT, SurveyError, summarise

__all__ = [
    "DEFAULT_MODEL", "FILTER_COMPONENTS", "PAPER_IMAGES", "SURVEY_FORMAT", "BatchResult", "FashionImages",
    "FolderImages", "Images", "Shard", "SurveyError", "SurveyRecord", "accuracy_figure", "check_manifest",
    "distance_figure", "faithfulness_figure", "faithfulness_steps", "filters_figure", "head_importance_figure",
    "image_records", "main",
    "mean_and_interval", "open_images", "parse_args", "position_figure", "read_shards", "report_html",
    "rollout_figure", "run_survey", "summarise", "survey_batch", "survey_images", "t_quantile",
    "weights_digest", "write_figures", "write_outputs",
]
