"""python -m benchmarks.browser: what a person waits for, measured in a real browser (headless Chromium).

benchmarks.server times the app's handlers in-process. This one starts the real app (`python app.py` on a free port
of 127.0.0.1, offline, with the shipped checkpoint in the menu), opens it in Debian's headless Chromium through
Playwright, and for each model (the shipped one, the default offline; ViT-B/16 · random init, chosen in the model
menu on a fresh page) does what a visitor does:

    upload      the example photo set on the upload box -> step 0's views on screen
    tab N       each step's tab clicked, the first visit after the upload (steps 1..5)
    control     every control of explorer.app.views.CONTROLS changed to a value not seen before (slider: an arrow
                key; dropdown: an option clicked; radio: another choice clicked; text box: new text + Enter), on its
                own step; a click on a patch of the picker and "Unpick the patch", on each step whose views
                read the selected patch; a click on each view whose clicks take patches out (step 5's dropper)

and measures, for each action:

    painted     from the input event (pointerdown / keydown / the file input's change, as the page sees it) to the
                animation frame that follows the last change of a view the action's events output (the views, the
                patch picker, the selection text: DOM mutations inside them, an image loaded, a plot drawn; other
                elements, such as the inputs Gradio marks while an event runs, do not count), where a plot is drawn when
                the plot view's call of Plotly.react (or Plotly.relayout, when only the layout changed) has resolved
                (explorer.app.plot: the chart is updated in place): the page's Plotly functions are wrapped to see
                it; Plotly's own later relayouts at the same size are DOM mutations with nothing new on screen: they
                count for "settled_ms" in the JSON, not for painted),
                once every event the action started has completed,
                every plot and image on screen is drawn (the plot views load plotly.js on first use, after a pause)
                and nothing has changed for --quiet-ms (300 ms). A MutationObserver over the whole document and an
                image `load` listener, installed before the page's own scripts, record these times
    server      the handler's own time for the same event(s): Gradio's process_completed message carries it
                (output.duration: the function call, without Gradio's pre/postprocessing); the messages are read by
                wrapping window.fetch, which the Gradio client uses for its event stream (/gradio_api/queue/data)
    painted = to join + server + post+wire + render:
    to join     input -> the event sent (queue/join): the page's own work first (and the file upload, for an upload)
    post+wire   the event's round trip less the server time: queueing, Gradio's pre/postprocessing (figures to
                JSON, images to files), the transfer
    render      the arrival of the last process_completed message -> painted: the browser's share
    bytes       everything the server sent between the action and the end of the measurement, from the DevTools
                protocol (Network.dataReceived: encodedDataLength, or dataLength while Chrome reports the encoded
                size of an open stream late; plus what Network.loadingFinished reports beyond it: response headers).
                "data" is what the app sends for this action (the event stream, the files it serves such as
                images, the upload and join replies); "static" is the page's own code and fonts, fetched on first
                use (Plotly's and KaTeX's bundles) and cached afterwards

Targets: every control change painted <= its server time + 300 ms (median over --repeats); <= 1 MB (10^6 bytes) of
data per step (upload, tab, control) on ViT-B/16. Rows that miss list the outputs whose payloads are biggest (the
JSON of each output in the process_completed message, plus the files it points to), for making those views lighter.

    python -m benchmarks.browser                      # the shipped model and ViT-B/16, 3 repeats per control
    python -m benchmarks.browser --quick              # the shipped model, 1 repeat (the smoke test's settings)
    python -m benchmarks.browser --model ViT-B/16 --repeats 5 --json bench-results/browser.json --markdown

Needs Debian's chromium (/usr/bin/chromium; never `playwright install`) and the playwright package. This is a
measurement, not a test: it exits 0 whether targets are met or missed, nonzero only when it could not run.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from explorer.app import views
from explorer.app.text import STEPS
from explorer.app.ui import control_elem_id, view_elem_id

from .app_process import AppProcess
from .models import ROOT, SHIPPED, command_line, prepare_checkpoints, session_model
from .page import ControlDriver, Names, Page, click_in_image
from .report import (console, error_text, finish_report, format_markdown, format_table, median, number,
                     percentile, start_report, write_json)

CHROMIUM = "/usr/bin/chromium"  # Debian's package; never `playwright install` (it downloads a browser)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DEFAULT_MODELS = (SHIPPED, "ViT-B/16")
CONTROL_SLACK_MS = 300.0  # a control change is painted within its server time + this
MAX_STEP_BYTES = 1_000_000  # data sent per step (upload, tab, control) ...
BYTES_TARGET_MODEL = "ViT-B/16"  # ... on this model
TARGETS = {"control": f"painted <= server + {CONTROL_SLACK_MS:.0f} ms",
           "bytes": f"<= {MAX_STEP_BYTES / 1e6:g} MB data per step on {BYTES_TARGET_MODEL}"}
PATCH_SPOTS = ((0.35, 0.65), (0.8, 0.2), (0.55, 0.45), (0.15, 0.85), (0.9, 0.9), (0.1, 0.1), (0.65, 0.3))


# ---------------------------------------------------------------------------------------------------------------
# Rows

@dataclass
class Row:
    """One action of one model, over its repeats: times in ms, bytes in bytes (10^3 = 1 KB)."""

    id: str  # "upload", "tab.3", "control.layer", "control.select_patch.step2", "model"
    label: str
    kind: str  # "upload" | "tab" | "control" | "model"
    model: str
    painted: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)
    render: list[float] = field(default_factory=list)  # painted - arrival of the last process_completed
    to_join: list[float] = field(default_factory=list)  # input -> the event sent (queue/join)
    post_wire: list[float] = field(default_factory=list)  # event sent -> completed, less the server's time
    data_bytes: list[float] = field(default_factory=list)
    static_bytes: list[float] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)  # per repeat: events, outputs, requests
    target: str = ""
    status: str = ""  # "PASS" | "MISS" | "ERROR" | "" (no target)
    misses: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def painted_ms(self):
        return median(self.painted)

    @property
    def server_ms(self):
        return median(self.server)

    @property
    def excess_ms(self):  # the median of (painted - server) over the repeats
        return median([p - s for p, s in zip(self.painted, self.server)])

    @property
    def render_ms(self):
        return median(self.render)

    @property
    def bytes(self):
        return median(self.data_bytes)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(painted_ms=self.painted_ms, server_ms=self.server_ms, excess_ms=self.excess_ms,
                   render_ms=self.render_ms, to_join_ms=median(self.to_join),
                   post_wire_ms=median(self.post_wire), bytes=self.bytes, static=median(self.static_bytes),
                   painted_p90=percentile(self.painted, 90) if self.painted else None, n=len(self.painted))
        return out


def judge(row: Row) -> Row:
    """Fill row.target, row.status and row.misses: controls against their server time, bytes on ViT-B/16."""
    if row.error and not row.painted:
        row.status = "ERROR"
        return row
    targets = []
    if row.kind == "control":
        targets.append(TARGETS["control"])
        if row.excess_ms is not None and row.excess_ms > CONTROL_SLACK_MS:
            row.misses.append(f"painted {row.excess_ms:.0f} ms after the server's {row.server_ms:.0f} ms")
    if row.kind in ("upload", "tab", "control") and row.model.startswith(BYTES_TARGET_MODEL):
        targets.append(f"<= {MAX_STEP_BYTES / 1e6:g} MB")
        if row.bytes is not None and row.bytes > MAX_STEP_BYTES:
            row.misses.append(f"{row.bytes / 1e6:.2f} MB sent")
    row.target = "; ".join(targets)
    if targets:
        row.status = "MISS" if row.misses else "PASS"
    if row.error:
        row.status = "ERROR"
    return row


# ---------------------------------------------------------------------------------------------------------------
# One model: upload, tabs, controls and clicks, each measured on the page

def run_model(browser, app: AppProcess, names: Names, name: str, args, checkpoint: Path, image: Path,
              notes: list[str]) -> list[Row]:
    """Every measurement for one model, on a fresh page (its own browser context: nothing cached)."""
    wanted = session_model(name, checkpoint)  # a menu label, or a checkpoint stem that its label contains
    rows: list[Row] = []
    page = Page(browser, app.url, names, args.quiet_ms, args.timeout)
    try:
        current = page.page.input_value("#model input")
        model = short_label(current)
        if wanted not in current:
            page.page.click("#model input")
            option = page.page.locator(f"#model li.item[aria-label*='{wanted}']").first
            option.wait_for()
            model = short_label(option.get_attribute("aria-label"))
            row = Row("model", "model chosen in the menu (loaded)", "model", model)
            _record(row, page.measure(option.click))
            rows.append(row)
        model = short_label(page.page.input_value("#model input") or model)
        print(f"- {model}: upload, tabs, controls ...", flush=True)

        def measure(row_id, label, kind, action, repeats=1, prepare=None):
            row = Row(row_id, label, kind, model)
            for repeat in range(repeats):
                try:
                    after = None
                    if prepare is not None:
                        action, after = prepare(repeat)
                    _record(row, page.measure(action))
                    if after is not None:
                        after()
                        page.settle()
                except Exception as error:  # a measurement, not a test: say so in the table and go on
                    row.error = error_text(error)
                    with contextlib.suppress(Exception):
                        page.page.keyboard.press("Escape")
                        page.settle(min_events=0)
                    break
            rows.append(row)
            _progress(row)
            return row

        measure("upload", f"upload {image.name} -> step 0", "upload",
                lambda: page.page.set_input_files("#upload input[type=file]", str(image)))
        for number in range(1, len(STEPS)):
            measure(f"tab.{number}", f"tab {STEPS[number]} (first visit)", "tab",
                    lambda n=number: page.page.click(f"#tab-{n}-button"))

        driver = ControlDriver(page.page)
        for number in range(1, len(STEPS)):
            page.page.click(f"#tab-{number}-button")  # back on this step: not timed
            page.settle()
            for control_name, control in views.CONTROLS.items():
                if control.step != number:
                    continue
                if control.kind == "radio" and page.page.locator(f"#{control_elem_id(control_name)} label").count() < 2:
                    continue  # one choice on this model (the paper's ViT's query: CLS alone): nothing to change
                measure(f"control.{control_name}", f"{control_name} ({control.kind}), step {number}",
                        "control", None, args.repeats,
                        prepare=lambda r, n=control_name, k=control.kind: driver.prepare(n, k, r))
            if views.affected(number, "selected"):
                for repeat in range(args.repeats):  # a patch, then back to the class token
                    spot = PATCH_SPOTS[repeat % len(PATCH_SPOTS)]
                    _extend(rows, measure(f"control.select_patch.step{number}",
                                          f"picker: patch clicked, step {number}", "control", None,
                                          prepare=lambda r, s=spot: (click_in_image(page.page, "#picker img", *s), None)))
                    _extend(rows, measure(f"control.class_token.step{number}",
                                          f"'Unpick the patch', step {number}", "control",
                                          page.page.get_by_role("button", name="Unpick the patch").click))
            for view_name, spec in views.VIEWS.items():
                if spec.step != number or spec.click is None:
                    continue
                measure(f"control.click.{view_name}", f"{view_name}: patch clicked ({spec.click}), step {number}",
                        "control", None, args.repeats,
                        prepare=lambda r, v=view_name: (click_in_image(
                            page.page, f"#{view_elem_id(v)} img", *PATCH_SPOTS[r % len(PATCH_SPOTS)]), None))
        if page.errors:
            notes.append(f"{model}: uncaught errors in the page: {page.errors[:3]}")
    finally:
        page.close()
    return rows


def short_label(label: str) -> str:
    """A menu label without its description ("ViT-Fashion/4 · vit_fashion_mnist — shipped checkpoint, ...")."""
    return label.split(" — ")[0].strip()


def _extend(rows: list[Row], row: Row) -> None:
    """Repeats of one action measured one at a time (interleaved with another): fold them into the first row."""
    first = next(r for r in rows if r.id == row.id and r.model == row.model)
    if first is not row:
        rows.remove(row)
        for name in ("painted", "server", "render", "to_join", "post_wire", "data_bytes", "static_bytes", "samples"):
            getattr(first, name).extend(getattr(row, name))
        first.error = first.error or row.error


def _record(row: Row, sample: dict) -> None:
    row.samples.append(sample)
    if sample["error"]:
        row.error = sample["error"]
        return
    row.painted.append(sample["painted_ms"])
    row.server.append(sample["server_ms"])
    for name in ("render", "to_join", "post_wire"):
        if sample[f"{name}_ms"] is not None:
            getattr(row, name).append(sample[f"{name}_ms"])
    row.data_bytes.append(sample["data_bytes"])
    row.static_bytes.append(sample["static_bytes"])


def _progress(row: Row) -> None:
    if row.error and not row.painted:
        print(f"  {row.id}: ERROR {row.error}", flush=True)
    elif row.painted:
        print(f"  {row.id}: painted {row.painted[-1]:.0f} ms, server {row.server[-1]:.0f} ms, "
              f"{row.data_bytes[-1] / 1e3:.0f} KB", flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Output

COLUMNS = ("model", "measurement", "painted ms", "server ms", "painted-server", "to join", "post+wire", "render",
           "data KB", "static KB", "n", "result")
NUMERIC = set(range(2, 11))


def _result(row: Row) -> str:
    if row.status != "MISS":
        return row.status
    short = []
    if row.excess_ms is not None and row.kind == "control" and row.excess_ms > CONTROL_SLACK_MS:
        short.append(f"+{row.excess_ms:.0f} ms")
    if row.bytes is not None and row.bytes > MAX_STEP_BYTES and row.model.startswith(BYTES_TARGET_MODEL):
        short.append(f"{row.bytes / 1e6:.2f} MB")
    return "MISS: " + ", ".join(short)


def table_rows(rows: list[Row]) -> list[list[str]]:
    return [[r.model, r.label, number(r.painted_ms, 0), number(r.server_ms, 0), number(r.excess_ms, 0),
             number(median(r.to_join), 0), number(median(r.post_wire), 0), number(r.render_ms, 0),
             number(None if r.bytes is None else r.bytes / 1e3, 1),
             number(None if not r.static_bytes else median(r.static_bytes) / 1e3, 1), str(len(r.painted)), _result(r)]
            for r in rows]


def heavy_outputs(row: Row, top: int = 4) -> list[str]:
    """The biggest outputs of a row's last measured sample: the JSON in the event stream and the files it points to."""
    sample = next((s for s in reversed(row.samples) if not s.get("error")), None)
    if sample is None:
        return []
    sizes: dict[str, list[int]] = {}
    for event in sample["events"]:
        for output in event["outputs"]:
            json_chars, files = sizes.setdefault(output["output"], [0, 0])
            sizes[output["output"]] = [json_chars + output["json_chars"], files + output["file_bytes"]]
    ranked = sorted(sizes.items(), key=lambda kv: -sum(kv[1]))[:top]
    return [f"{name} {(j + f) / 1e3:.0f} KB" + (f" ({f / 1e3:.0f} KB of files)" if f else "") for name, (j, f) in ranked
            if j + f >= 1000]


def explain_misses(rows: list[Row]) -> list[str]:
    lines = []
    for row in rows:
        if row.status == "MISS":
            heavy = heavy_outputs(row)
            sample = next((s for s in reversed(row.samples) if not s.get("error")), {})
            last = ", ".join(f"{owner.removeprefix('view-')} {t} ms" for owner, t in sample.get("last_changed", [])[:3])
            lines.append(f"{row.model} / {row.id}: {'; '.join(row.misses)}"
                         + (f"; render {row.render_ms:.0f} ms after the last message" if row.render_ms else "")
                         + (f"; changed last: {last}" if last else "")
                         + (f". Biggest outputs: {', '.join(heavy)}" if heavy else ""))
    return lines


# ---------------------------------------------------------------------------------------------------------------
# Main

def parse_args(argv=None) -> argparse.Namespace:
    p = command_line("benchmarks.browser", __doc__, f"{SHIPPED!r} (the --checkpoint) or a preset (random weights); "
                     f"repeatable; default: {' and '.join(DEFAULT_MODELS)} (--quick: {SHIPPED})")
    p.add_argument("--repeats", type=int, default=None, help="changes per control (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true", help=f"{SHIPPED} only, one change per control (the smoke test)")
    p.add_argument("--quiet-ms", type=float, default=300.0,
                   help="an action is over when nothing has changed on the page for this long (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds one action may take (default: %(default)s)")
    p.add_argument("--json", type=Path, default=ROOT / "bench-results" / "browser_bench.json",
                   help="(default: %(default)s)")
    p.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = p.parse_args(argv)
    args.models = args.model or ([SHIPPED] if args.quick else list(DEFAULT_MODELS))
    args.repeats = max(1, args.repeats or (1 if args.quick else 3))
    return args


def run(args) -> tuple[dict, list[Row]]:
    """Start the app and the browser, measure every model, stop both (always)."""
    from playwright.sync_api import sync_playwright

    started = time.perf_counter()
    report = start_report("benchmarks.browser", args, TARGETS, busy_seconds=1.0)
    machine = report["machine"]
    machine["chromium"] = CHROMIUM
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="explorer-browser-bench-") as folder:
        temp = Path(folder)
        checkpoint_dir = prepare_checkpoints(args.models, args.checkpoint, temp / "checkpoints")
        survey = Path(str(args.checkpoint) + "_survey")  # the shipped checkpoint's survey: its views as shipped
        if SHIPPED in args.models and survey.is_dir():
            (checkpoint_dir / survey.name).symlink_to(survey.resolve())
        with AppProcess(checkpoint_dir, temp, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1") as app, \
                sync_playwright() as playwright:
            report["app_http_200_s"] = round(app.started_s, 2)
            print(f"app up on {app.url} in {app.started_s:.1f} s; Chromium ...", flush=True)
            names = Names(app.config())
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                machine["chromium_version"] = browser.version
                for name in args.models:
                    try:
                        model_rows = run_model(browser, app, names, name, args, args.checkpoint, args.image,
                                               report["notes"])
                    except Exception as error:  # the page broke for this model: report it, go on with the next
                        model_rows = [Row("model", "the page for this model", "model", name,
                                          error=error_text(error, 300))]
                        print(f"  ERROR {model_rows[0].error}", flush=True)
                    rows += model_rows
            finally:
                browser.close()
            report["app_log_tail"] = app.log()[-1500:]
    for row in rows:
        judge(row)
    report["rows"] = [r.to_dict() for r in rows]
    finish_report(report, [r.status for r in rows], started, misses=explain_misses(rows),
                  errors=[f"{r.model} {r.id}: {r.error}" for r in rows if r.error])
    return report, rows


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        print("benchmarks.browser needs playwright: pip install playwright (never `playwright install`: it "
              f"uses Debian's chromium at {CHROMIUM}).", file=sys.stderr)
        return 2
    if not Path(CHROMIUM).is_file():
        print(f"benchmarks.browser needs a browser at {CHROMIUM}: apt-get install chromium.", file=sys.stderr)
        return 2
    if SHIPPED in args.models and not Path(str(args.checkpoint) + ".json").is_file():
        print(f"No checkpoint at {args.checkpoint}(.json/.safetensors): pass --checkpoint, or --model without "
              f"{SHIPPED!r}.", file=sys.stderr)
        return 2
    try:
        report, rows = run(args)
    except Exception as error:  # the app or the browser could not be started: nothing was measured
        print(f"benchmarks.browser could not run: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print()
    print(format_table(COLUMNS, table_rows(rows), NUMERIC))
    summary = report["summary"]
    print(f"\n{summary['pass']} PASS, {summary['miss']} MISS, {summary['error']} ERROR. Medians of up to "
          f"{args.repeats} changes per control; upload and tabs once per model. Targets: {TARGETS['control']} "
          f"(controls); {TARGETS['bytes']}.")
    for line in summary["misses"]:
        print(f"MISS {line}")
    for line in summary["errors"]:
        print(f"ERROR {line}")
    for line in report["notes"]:
        print(line)
    if args.markdown:
        print()
        print(format_markdown(COLUMNS, table_rows(rows), NUMERIC, report["machine"]))
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    console(main)
