"""The survey's outputs in a folder: survey.json, run.json, the figures, and report.html, one self-contained page
(the figures embedded as data URIs, the numbers in tables)."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from .figures import write_figures


def _table(header: list[str], rows: list[list]) -> str:
    cells = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def report_html(survey: dict, run: dict, figures: dict[str, Path]) -> str:
    """One self-contained page: the figures as data URIs, the numbers in tables."""
    model, data = survey["model"], survey["data"]
    esc = html.escape
    parts = [f"<h1>Survey: {esc(model['name'])} · {esc(model['weights'])}</h1>",
             f"<p>{esc(model.get('family', model['name']))}: {esc(model['source'])}. {survey['images']:,} images of "
             f"{esc(data['source'])}, the first {data['surveyed']:,} in {esc(data['order'])}."
             + ("" if model["trained"] else " <b>Random init: predictions are meaningless; shapes are real.</b>")
             + "</p>"]
    for note in data["notes"] + survey.get("notes", []):
        parts.append(f"<p class=note>{esc(note)}</p>")
    if survey["skipped"]:
        parts.append(f"<p class=note>{len(survey['skipped'])} files could not be read and are left out: "
                     + esc("; ".join(f"{s['name']}: {s['reason']}" for s in survey["skipped"][:10])) + "</p>")

    accuracy = survey["accuracy"]
    if accuracy:
        parts.append("<h2>Accuracy</h2>")
        parts.append(f"<p>Top-1 accuracy <b>{accuracy['accuracy']:.4f}</b> ({accuracy['correct']:,} / "
                     f"{accuracy['images']:,}).</p>")
        parts.append(_table(["class", "images", "correct", "accuracy"],
                            [[k, v["images"], v["correct"], f"{v['accuracy']:.4f}"]
                             for k, v in accuracy["per_class"].items()]))
        parts += [_image(figures[k], k) for k in ("accuracy", "confusion") if k in figures]
    elif survey.get("predicted_classes") is not None:
        top = list(survey["predicted_classes"].items())[:10]
        parts.append("<h2>Predictions</h2><p>No labels: the most predicted classes.</p>")
        parts.append(_table(["class", "images"], top))

    mad = survey["mean_attention_distance"]
    mean, std = np.array(mad["mean"]), np.array(mad["std"])
    parts.append("<h2>Mean attention distance (Fig. 7 right)</h2>")
    parts.append(f"<p>Per head, (1/N) Σ_i Σ_j A[i, j] · P · ‖g_i − g_j‖ in pixels; the class token "
                 f"{esc(mad['class_token'])}. Mean ± standard deviation over {mad['images']:,} images. A head that "
                 f"spread its attention evenly over the patches would score {mad['uniform_attention']:.2f} px (the "
                 f"dashed line).</p>")
    parts.append(_image(figures["attention_distance"], "mean attention distance"))
    parts.append(_table(["layer", "mean over heads"] + [f"head {h + 1}" for h in range(mean.shape[1])],
                        [[l + 1, f"{mad['layer_mean'][l]:.2f}"] + [f"{mean[l, h]:.2f} ± {std[l, h]:.2f}"
                                                                    for h in range(mean.shape[1])]
                         for l in range(mean.shape[0])]))
    parts.append("<h2>Attention rollout (Fig. 6)</h2>")
    parts.append(f"<p>Heads fused by their mean, nothing discarded; {esc(survey['rollout']['scaling'])}.</p>")
    parts.append(_image(figures["rollout"], "mean rollout"))
    parts.append("<h2>Position embeddings (Fig. 7 centre)</h2>")
    parts.append(_image(figures["position_similarity"], "position embedding similarity"))
    parts.append("<h2>Embedding filters (Fig. 7 left)</h2>")
    parts.append(_image(figures["embedding_filters"], "embedding filter principal components"))
    explained = survey["embedding_filters"]["explained_variance_ratio"]
    parts.append(_table(["component", "explained variance"], [[k + 1, f"{v:.2%}"] for k, v in enumerate(explained)]))

    norms = survey.get("token_norms")
    if norms:
        mean = np.array(norms["mean"])  # (L + 1, prefix + 2)
        parts.append("<h2>Token norms</h2>")
        parts.append(f"<p>‖z_l‖ of each token, {esc(norms['layers'])}, mean over {norms['images']:,} images: "
                     f"registers and high-norm patches show here (Darcet et al. 2023).</p>")
        parts.append(_table(["layer"] + norms["tokens"],
                            [[l] + [f"{v:.2f}" for v in mean[l]] for l in range(mean.shape[0])]))

    importance = survey.get("head_importance")
    if importance:
        parts += _head_importance_section(importance, figures["head_importance"])
    faithful = survey["faithfulness"]
    if faithful:
        steps = "every patch count" if faithful["steps"] is None else f"{faithful['steps']} steps"
        parts.append("<h2>Faithfulness (deletion and insertion)</h2>")
        parts.append(f"<p>Areas under the top class's probability as patches are removed (deletion: lower is "
                     f"faithful) or added (insertion: higher is faithful), most relevant first, {steps}; "
                     f"{faithful['images']} images; {esc(faithful['interval'])}.</p>")
        parts.append(_image(figures["faithfulness"], "faithfulness"))

        def cell(s):
            return f"{s['mean']:.4f}" + (f" [{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}]" if s["ci95"] else "")

        parts.append(_table(["method", "deletion area (95% CI)", "insertion area (95% CI)"],
                            [[m, cell(v["deletion"]), cell(v["insertion"])] for m, v in faithful["methods"].items()]))
    parts.append("<h2>Run</h2>")
    parts.append(_table(["", ""], [[k, v] for k, v in run.items()]))
    style = ("body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;"
             "margin:1em 0}.note{color:#8a5a00}")
    title = f"Survey: {model['name']} on {data['source']}"
    return (f"<!doctype html>\n<html lang=en><head><meta charset=utf-8><title>{esc(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def _head_importance_section(importance: dict, figure: Path) -> list[str]:
    """The heads' worth for the top class: the figure, then per layer each head's mean drop and 95% interval."""
    mean = np.array(importance["mean"])  # (L, h)
    L, h = mean.shape
    agreement = importance["estimate_spearman"]

    def cell(l: int, j: int) -> str:
        if importance["ci95_low"] is None:
            return f"{mean[l, j]:.4f}"
        return f"{mean[l, j]:.4f} [{importance['ci95_low'][l][j]:.4f}, {importance['ci95_high'][l][j]:.4f}]"

    agree = f"{agreement['mean']:.3f}" + (f" [{agreement['ci95'][0]:.3f}, {agreement['ci95'][1]:.3f}]"
                                          if agreement["ci95"] else "")
    return ["<h2>Head importance</h2>",
            f"<p>For each head, the drop in the top class's probability when that head alone is switched off (its "
            f"output removed before U_msa), averaged over {importance['images']:,} images; "
            f"{html.escape(importance['interval'])}. Attribution patching's first-order estimate (one forward, one "
            f"backward) ranks the heads of an image like this, by Spearman's correlation over the heads: {agree}.</p>",
            _image(figure, "head importance"),
            _table(["layer", "mean over heads"] + [f"head {j}" for j in range(h)],
                   [[l + 1, f"{importance['layer_mean'][l]:.4f}"] + [cell(l, j) for j in range(h)]
                    for l in range(L)])]


def write_outputs(survey: dict, run: dict, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "survey.json").write_text(json.dumps(survey, indent=1) + "\n")
    (out / "run.json").write_text(json.dumps(run, indent=1) + "\n")
    figures = write_figures(survey, out)
    (out / "report.html").write_text(report_html(survey, run, figures), encoding="utf-8")
    return {"survey": out / "survey.json", "run": out / "run.json", "report": out / "report.html", **figures}
