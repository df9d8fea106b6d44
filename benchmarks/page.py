"""The app's page in headless Chromium, instrumented: what a person's action costs, from the input event to the
frame that shows its answer, split into the page's share, the handler's, Gradio's and the wire's, with the bytes the
server sent (the DevTools protocol); and the ways a person changes each kind of control.

The measuring script is benchmarks/browser.js, installed in the page before the page's own scripts.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from explorer.app import views
from explorer.app.plot import plotly_js
from explorer.app.ui import control_elem_id, view_elem_id

PAGE_SCRIPT = Path(__file__).with_name("browser.js")
UNDRAWN_WAIT_S = 20.0  # a view on screen still not drawn after this long without any change: reported, not awaited


class Names:
    """From the page's /config: each event's name (its api_name) and each output's name (a view's registry name,
    else the component's elem_id or type)."""

    def __init__(self, config: dict):
        view_ids = {view_elem_id(name): name for name in views.VIEWS}
        components, elem_ids = {}, {}
        for c in config.get("components", []):
            props = c.get("props", {})
            elem_id = props.get("elem_id")
            components[c["id"]] = view_ids.get(elem_id) or elem_id or props.get("label") or c.get("type", "?")
            elem_ids[c["id"]] = elem_id
        self.events, self.outputs, self.output_ids = {}, {}, {}
        for index, dependency in enumerate(config.get("dependencies", [])):
            key = dependency.get("id", index)
            self.events[key] = dependency.get("api_name") or f"fn {key}"
            self.outputs[key] = [components.get(i, str(i)) for i in dependency.get("outputs", [])]
            self.output_ids[key] = [elem_ids[i] for i in dependency.get("outputs", []) if elem_ids.get(i)]


class Network:
    """Bytes received per request, from the DevTools protocol, in arrival order (so an action's share is a slice).

    Chrome reports a chunk's encodedDataLength late for a response that stays open (Gradio's event stream: 0 with
    the chunk, the sum with a later one), so a request's count is the larger of its encoded and decoded bytes so far
    (they differ by the chunk framing: the app's responses are not compressed), and loadingFinished's total
    (headers included) when it ends. data: and blob: URLs are made in the page and not counted."""

    def __init__(self, cdp):
        self.urls: dict[str, str] = {}
        self.totals: dict[str, list[int]] = {}  # request id -> [decoded so far, encoded so far, counted]
        self.encodings: dict[str, str] = {}
        self.log: list[tuple[str, int]] = []  # (request id, bytes newly counted)
        cdp.on("Network.requestWillBeSent", lambda e: self.urls.__setitem__(e["requestId"], e["request"]["url"]))
        cdp.on("Network.responseReceived", self._response)
        cdp.on("Network.dataReceived", lambda e: self._count(e["requestId"], e.get("dataLength") or 0,
                                                             e.get("encodedDataLength") or 0))
        cdp.on("Network.loadingFinished", lambda e: self._count(e["requestId"], 0, 0,
                                                                int(e.get("encodedDataLength") or 0)))
        cdp.send("Network.enable")

    def _response(self, event) -> None:
        headers = {k.lower(): v for k, v in event["response"].get("headers", {}).items()}
        if headers.get("content-encoding"):
            self.encodings[event["requestId"]] = headers["content-encoding"]

    def _count(self, request_id: str, decoded: int, encoded: int, finished: int = 0) -> None:
        if self.urls.get(request_id, "").startswith(("data:", "blob:")):
            return  # made in the page (Plotly draws heatmaps as data: URL images): nothing the server sent
        total = self.totals.setdefault(request_id, [0, 0, 0])
        total[0] += int(decoded)
        total[1] += int(encoded)
        known = max(total[1], finished) if request_id in self.encodings else max(total[0], total[1], finished)
        if known > total[2]:
            self.log.append((request_id, known - total[2]))
            total[2] = known

    def mark(self) -> int:
        return len(self.log)

    def since(self, mark: int) -> dict[str, int]:
        """URL -> bytes received since `mark`."""
        out: dict[str, int] = {}
        for request_id, size in self.log[mark:]:
            url = self.urls.get(request_id, "?")
            out[url] = out.get(url, 0) + size
        return out


def is_static(url: str) -> bool:
    """The page's own code, styles and fonts (not what the app sends for an action): Gradio's, and the plotly.js
    the plot views load on first use (explorer.app.plot)."""
    return "/gradio_api/" not in url or url.split("?")[0].endswith("/" + plotly_js().name)


class Page:
    """One browser page on the app, with the measuring script installed and the network watched."""

    def __init__(self, browser, url: str, names: Names, quiet_ms: float, timeout_s: float):
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000}, service_workers="block")
        self.context.add_init_script(PAGE_SCRIPT.read_text())
        self.page = self.context.new_page()
        self.page.set_default_timeout(60_000)
        self.network = Network(self.context.new_cdp_session(self.page))
        self.names, self.quiet_ms, self.timeout_s = names, quiet_ms, timeout_s
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)[:300]))
        self.page.goto(url, wait_until="load")
        self.page.wait_for_selector("#upload")
        plots = [view_elem_id(n) for n, v in views.VIEWS.items() if v.kind == "plot"]
        images = [view_elem_id(n) for n, v in views.VIEWS.items() if v.kind == "image"] + ["picker"]
        self.page.evaluate("([p, i]) => { window.__bench.plots = p; window.__bench.images = i; }", [plots, images])
        self.settle(min_events=0, quiet_ms=1500)  # the page's own load events

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.context.close()

    def settle(self, min_events: int = 1, quiet_ms: float | None = None) -> dict:
        """Wait until `min_events` events have started and every one has completed, then for a quiet page."""
        return self.page.evaluate("o => window.__bench.settle(o)", {
            "quiet": self.quiet_ms if quiet_ms is None else quiet_ms, "timeout": self.timeout_s * 1000,
            "minEvents": min_events, "joinWait": 10_000, "undrawnWait": UNDRAWN_WAIT_S * 1000})

    def measure(self, action, min_events: int = 1) -> dict:
        """Run action() and measure it: painted, server, render (ms), data and static bytes, and what was sent."""
        self.page.evaluate("window.__bench.arm()")
        mark = self.network.mark()
        action()
        result = self.settle(min_events)
        self.page.evaluate("0")  # let the DevTools events queued meanwhile reach our listeners
        received = self.network.since(mark)
        events = result["events"]
        sample = {"reason": result["reason"], "events": [], "requests": received}
        start = result["start"] if result["start"] is not None else result["armedAt"]
        if result["start"] is None:
            sample["note"] = "no input event seen: timed from arm()"
        # The elements (nearest id: a view, a control) changed last, and when (ms after the input).
        sample["last_changed"] = [[owner, round(t - start)] for owner, t in
                                  sorted(result["owners"], key=lambda o: -o[1])[:6]]
        for event in events:
            name = self.names.events.get(event["fn_index"], f"fn {event['fn_index']}")
            outputs = self.names.outputs.get(event["fn_index"], [])
            sizes = []
            for i, output in enumerate(event.get("outputs") or []):
                files = sum(received.get(u, 0) for u in output["urls"])
                sizes.append({"output": outputs[i] if i < len(outputs) else str(i), "json_chars": output["chars"],
                              "file_bytes": files})
            sample["events"].append({"event": name, "server_ms": _ms(event.get("duration")),
                                     "queued_to_completed_ms": _delta(event["completed"], event["sent"]),
                                     "input_to_join_ms": _delta(event["sent"], start), "success": event.get("success"),
                                     "error": event.get("error"), "stream_chars": event["stream_chars"],
                                     "outputs": sorted(sizes, key=lambda s: -(s["json_chars"] + s["file_bytes"]))})
        problems = []
        if result["reason"] != "quiet":
            problems.append({"no event": "the action started no event",
                             "timeout": f"not settled within {self.timeout_s:.0f} s",
                             "undrawn": f"not drawn {UNDRAWN_WAIT_S:.0f} s after the last change: "
                                        f"{', '.join(result['undrawn'])}"}.get(result["reason"], result["reason"]))
        problems += [f"{e['event']}: {e['error']}" for e in sample["events"] if e.get("error")]
        if events and any(e.get("duration") is None for e in events) and not problems:
            problems.append("an event completed without a duration")
        # Painted: the frame after the last change of a view that the action's events output (result["paint"], the
        # last change anywhere, where none of them changed).
        outputs = {i for event in events for i in self.names.output_ids.get(event["fn_index"], [])}
        drawn = [t for i, t in result["viewPaint"].items() if i in outputs and t > start]
        paint = max(drawn) if drawn else result["paint"]
        sample["views_painted"] = sorted(i for i in result["viewPaint"] if i in outputs)
        # Each Plotly.react Gradio called: (view, called, returned, resolved), ms from the action's start.
        sample["plotly_react"] = [[view, *(round(t - start, 1) for t in times)] for view, *times in result["reactLog"]]
        if paint <= start:
            problems.append("nothing was painted after the action")
        sample["error"] = "; ".join(problems)
        sample["painted_ms"] = paint - start
        sample["settled_ms"] = result["settled"] - start  # Plotly's later same-size relayouts included
        # The events the person waited for: those done by the paint. A chained event that finishes later drew nothing
        # seen here (step 5's curves, after an upload shown on another step, send no change).
        waited = [e for e in events if e.get("completed") is None or e["completed"] <= paint] or events
        sample["after_paint"] = [self.names.events.get(e["fn_index"], f"fn {e['fn_index']}")
                                 for e in events if e not in waited]
        sample["server_ms"] = server_span(waited)
        completed = [e["completed"] for e in waited if e.get("completed") is not None]
        sent = [e["sent"] for e in waited if e.get("sent") is not None]
        # painted = to_join (the browser, and the file upload, before the event is sent) + post_wire (queue, Gradio's
        # pre/postprocessing, transfer: the event's round trip less the handler's time) + server + render
        sample["to_join_ms"] = min(sent) - start if sent else None
        sample["post_wire_ms"] = (max(completed) - min(sent) - sample["server_ms"]) if sent and completed else None
        sample["render_ms"] = paint - max(completed) if completed else None
        sample["data_bytes"] = sum(v for u, v in received.items() if not is_static(u))
        sample["static_bytes"] = sum(v for u, v in received.items() if is_static(u))
        return sample


def server_span(events) -> float:
    """The time (ms) the server worked on the events: the union of their handler intervals, each the duration before
    its completion message arrived. Events that run side by side (step 5's chained ones) count once, not summed; an
    event without a completion time adds its duration."""
    intervals, loose = [], 0.0
    for e in events:
        duration = _ms(e.get("duration")) or 0.0
        if e.get("completed") is None:
            loose += duration
        else:
            intervals.append((e["completed"] - duration, e["completed"]))
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total + loose


def _ms(seconds):
    return None if seconds is None else 1000.0 * seconds


def _delta(a, b):
    return None if a is None or b is None else a - b



def click_in_image(page, selector: str, fx: float, fy: float):
    """Scroll the image into view and return a function that clicks the point (fx, fy) of the picture as drawn
    (object-fit: contain, centred, never enlarged)."""
    locator = page.locator(selector).first
    locator.scroll_into_view_if_needed()
    x, y, width, height, natural_w, natural_h = locator.evaluate(
        "e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height, e.naturalWidth, "
        "e.naturalHeight]; }")
    scale = min(width / natural_w, height / natural_h, 1.0)
    shown_w, shown_h = natural_w * scale, natural_h * scale
    left, top = x + (width - shown_w) / 2, y + (height - shown_h) / 2
    return lambda: page.mouse.click(left + shown_w * fx, top + shown_h * fy)


class ControlDriver:
    """Changes a control of views.CONTROLS the way a person does, to a value it has not had (by its kind)."""

    def __init__(self, page):
        self.page = page
        self.used: dict[str, set] = {}

    def prepare(self, name: str, kind: str, repeat: int):
        """Do what comes before the change (open a menu, type text); return (the change, what to do after it)."""
        page, selector = self.page, "#" + control_elem_id(name)
        page.locator(selector).scroll_into_view_if_needed()
        if kind == "slider":
            box = page.locator(f"{selector} input[type=range]")
            value, low, high = (float(v) for v in box.evaluate("e => [e.value, e.min, e.max]"))
            box.focus()
            key = "ArrowRight" if value < high else "ArrowLeft"
            return (lambda: box.press(key)), None
        if kind == "textbox":
            box = page.locator(f"{selector} textarea, {selector} input").first
            box.fill(views.random_indices(64, seed=1000 + repeat) if name == "indices" else f"{repeat}")
            return (lambda: box.press("Enter")), box.blur  # leaving the box fires its blur event: settled, not timed
        if kind == "radio":
            labels = page.locator(f"{selector} label")
            checked = labels.evaluate_all("ls => ls.findIndex(l => l.querySelector('input').checked || "
                                          "l.classList.contains('selected'))")
            target = labels.nth((checked + 1) % labels.count())
            return target.click, None
        if kind == "dropdown":
            page.click(f"{selector} input")
            items = page.locator(f"{selector} li.item")
            items.first.wait_for()
            options = items.evaluate_all("es => es.map(e => [e.getAttribute('aria-label'), "
                                         "e.getAttribute('aria-selected')])")
            used = self.used.setdefault(name, set())
            fresh = [i for i in reversed(range(len(options))) if options[i][1] != "true" and options[i][0] not in used]
            others = [i for i in reversed(range(len(options))) if options[i][1] != "true"]
            index = (fresh or others)[0]  # from the end: for the class picker, classes outside the top 5
            used.add(options[index][0])
            return items.nth(index).click, None
        raise ValueError(f"benchmarks.page has no way to change a {kind!r} control ({name}).")

