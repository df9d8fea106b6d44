"""The visitor's screen width, as the page reports it, for laying out figures: on a narrow screen (a phone) the views
draw their panels one under the other instead of side by side (docs/accessibility.md, "A phone").

The page's script (a11y.js) keeps the window's width in a cookie, which every event's request carries; the app's
events read it (`width_of`) and draw inside `at_width`, and the views ask `narrow()`. Nothing is stored per visitor:
the width travels with each request, and a request without it (an API client, a benchmark) is drawn for a wide screen.
No Gradio here.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

COOKIE = "vit-width"  # a11y.js sets it: the window's width in CSS pixels
NARROW = 700  # px: at this width or less the page is one column (a11y.css's media query), and figures stack

_width: ContextVar[int | None] = ContextVar("screen_width", default=None)


def width_of(cookies) -> int | None:
    """The screen width a request's cookies report, or None where they report none (or nonsense)."""
    try:
        width = int(str((cookies or {}).get(COOKIE, "")).strip())
    except ValueError:
        return None
    return width if 0 < width < 100_000 else None


@contextmanager
def at_width(width: int | None):
    """Draw for a screen `width` pixels wide (None: wide) within this block."""
    token = _width.set(width)
    try:
        yield
    finally:
        _width.reset(token)


def narrow() -> bool:
    """Whether the figures being drawn are for a narrow screen: one panel per line, mosaics of fewer columns."""
    width = _width.get()
    return width is not None and width <= NARROW
