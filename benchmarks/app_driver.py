"""The app driven in-process as Gradio drives it: its own event handlers on the inputs a browser session holds, then
Gradio's own postprocessing of their outputs, on a page built by the app's factory (explorer.app.ui.build_app).
"""
from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path


class AppDriver:
    """Calls the app's event handlers as Gradio would (inputs by component, outputs through postprocess_data), on a
    page built by the app's own factory (explorer.app.ui.build_app) for the server being measured."""

    def __init__(self, app):
        from gradio.state_holder import SessionState

        self.app = app
        self.session = app.server
        self.events = {fn.api_name: fn for fn in app.demo.fns.values() if fn.api_name}
        self.names = {id(component): name for name, component in app.components.items()}
        self.loop = asyncio.new_event_loop()
        self.state = {}  # component name -> value, as a browser session would hold them
        self.session_state = SessionState(app.demo)  # the server makes one per browser session, not per event

    @classmethod
    def start(cls, checkpoint_dir: Path, device: str) -> "AppDriver":
        """A fresh session of the app (explorer.app.server.Server) on `device`, reading `checkpoint_dir`, and its page."""
        from explorer.app.server import Server
        from explorer.app.settings import Settings
        from explorer.app.ui import build_app

        return cls(build_app(Server(Settings.from_env(checkpoint_dir=checkpoint_dir), device=device)))

    def close(self) -> None:
        self.loop.close()

    def event_names(self) -> list[str]:
        return list(self.events)

    def call(self, api_name: str, postprocess: bool = True, event_data=None):
        """Run one event as the server would: the handler on the inputs this browser session holds, then Gradio's
        postprocessing and JSON. Outputs are kept as the browser keeps them (gr.State values, updated values), so
        `key`, `source`, `selected` and `step` follow the app's own handlers. With postprocess=False only the
        handler runs (to tell its time from Gradio's). `event_data` (a click's gr.SelectData) is passed as Gradio
        passes it (gradio.helpers.special_args)."""
        from gradio.helpers import special_args

        event = self.events[api_name]
        inputs = special_args(event.fn, [self._value(c) for c in event.inputs], event_data=event_data)[0]
        predictions = event.fn(*inputs)
        if not postprocess:
            return predictions
        payload = self.loop.run_until_complete(self.app.demo.postprocess_data(event, predictions, self.session_state))
        # What goes over the wire: JSON of the postprocessed values (figures are already JSON strings).
        json.dumps([p.model_dump() if hasattr(p, "model_dump") else p for p in payload], default=str)
        values = [predictions] if len(event.outputs) == 1 else list(predictions)
        for component, value in zip(event.outputs, values):
            name = self.names.get(id(component))
            if name is None:
                continue
            if isinstance(value, dict) and value.get("__type__") == "update":
                if "value" in value:
                    self.state[name] = value["value"]
            else:
                self.state[name] = value
        return predictions

    def _value(self, component):
        """What this browser session sends for an input: what it holds, else the component's initial value."""
        name = self.names.get(id(component))
        if name in self.state:
            return self.state[name]
        value = getattr(component, "value", None)
        return None if callable(value) else copy.deepcopy(value)


def default_state(driver: AppDriver, session_model: str, image) -> dict:
    """A fresh browser session that has chosen `session_model` and `image`; every other input keeps the value the
    app gives its component (the page as it loads)."""
    label = driver.session.registry.resolve(session_model).label
    return {"image": image, "model": label, "model_in_use": label, "step": 0}

