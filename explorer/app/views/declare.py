"""How a view is declared and drawn: the options a visitor sets, the registry of views and controls in page order, and
which views a change redraws.

    @view("eq2.rollout", step=2, kind="plot", label="Attention rollout (Fig. 6)", reads=("fusion", "discard"),
          stages=("blocks.*.attn.weights",))
    def rollout(entry, options): ...

`VIEWS` (name -> View) and `PAGE` (views and controls in page order) are all that explorer.app.ui reads to lay out
the page, wire the events and choose what to redraw: a control's change redraws exactly the visible views that read
it (`affected`), and a view that reads no option is drawn once per entry and kept (`render_views`). A view sees only
the options it declares (`Options.only`): reading another raises, so a declaration cannot fall behind its code.
A view also declares the trace stages it reads (`stages`, names or explorer.trace patterns): the page traces an image
asking for what the step shown reads (`stages_of`), and a view that reads a stage the entry's trace lacks makes it
trace again, once, with every stage of every view (`render_views`, explorer.app.cache.Entry.require); a declaration
that falls behind its code fails the tests that draw each step from a trace of its declared stages alone.
A drawn figure leaves here ready to send (explorer.app.transport.encode).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Callable

from ...tokens import TokenLayout
from ..screen import narrow
from ..text import STEPS
from ..transport import encode

LN_CHOICES = ("LN before MSA (Eq. 2)", "LN before MLP (Eq. 3)")


@dataclass(frozen=True)
class Options:
    """Everything a visitor can set. `selected` is a patch index i (0-based, row-major) or None for the token query
    `query_label`; the others are the controls declared below, under the same names."""

    selected: int | None = None
    indices: str = "0, 1, 2, 3, 4, 5, 6, 7"  # feature maps to show (Eq. 1)
    layer: int = 1  # l for the attention views (Eq. 2), 1-based
    head: str = "mean"  # "mean" or a head number 1..h, for the attention matrix
    fusion: str = "mean"  # rollout head fusion
    discard: float = 0.0  # rollout discard ratio
    ln_layer: int = 1  # l for the LayerNorm view (Eq. 3)
    ln_which: str = LN_CHOICES[0]  # or LN_CHOICES[1]
    target: str = ""  # the class to explain, as its index; "" for the top class
    dropped: tuple[int, ...] = ()  # patches taken out of the sequence (clicked), sorted
    scale: float = 1.0  # input size for Sec. 3.2, as a multiple of the model's own (1.0 = native)
    # The query when no patch is picked: "CLS", "DIST", "REG2", "mean of the patches". Last, so that the API's
    # positional inputs (the options in this order) keep their places.
    query_label: str = "CLS"

    def replace(self, **changes) -> "Options":
        return replace(self, **changes)

    @property
    def query(self) -> int:
        """The query token in the paper's layout: 0 for the class token, i + 1 for patch i."""
        return self.query_token(TokenLayout())

    def query_token(self, layout: TokenLayout) -> int | range:
        """The query in a model's layout: patch i's token, or when no patch is selected the token `query_label` names
        (TokenLayout.query: one the model lacks is its default, the class token or the mean of the patches; a range
        of tokens is the mean of their rows)."""
        return layout.query(self.query_label) if self.selected is None else layout.patch_token(int(self.selected))

    def query_name(self, layout: TokenLayout) -> str:
        """The query in words, by its label: "patch 17", "CLS", "REG2", "mean of the patches"."""
        return layout.query_name(self.query_token(layout))

    def only(self, names: tuple[str, ...]) -> "DeclaredOptions":
        """These options as a view that declared `names` sees them: any other raises AttributeError."""
        return DeclaredOptions(self, frozenset(names))


OPTION_NAMES = tuple(f.name for f in fields(Options))
CLICKED = ("selected", "dropped")  # options set by clicks on images, not by a control


class DeclaredOptions:
    """Read access to the declared options only (and the query, which is `selected` and `query_label`)."""

    def __init__(self, options: Options, names: frozenset[str]):
        self._options, self._names = options, names

    def __getattr__(self, name: str):
        declared = name in self._names or (name in ("query", "query_token", "query_name")
                                           and {"selected", "query_label"} <= self._names)
        if not declared:
            raise AttributeError(f"A view read option {name!r} without declaring it in reads=; add it there.")
        return getattr(self._options, name)


@dataclass(frozen=True)
class View:
    """One output of the page. `kind` is "markdown", "plot" or "image"; `row` groups neighbours side by side;
    `click` names the option a click on the view toggles a patch in (a tuple of patch indices); `alt(entry, options)`
    says in words what an image view shows (its alt text, for screen readers); `props` go to the component as they
    are (height, elem_id, ...)."""

    name: str
    step: int
    kind: str
    label: str
    reads: tuple[str, ...]
    draw: Callable
    row: str | None = None
    click: str | None = None
    props: dict = field(default_factory=dict)
    alt: Callable | None = None
    stages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Control:
    """One control of a step: it sets the option of the same name. `kind` is "slider", "dropdown", "radio" or
    "textbox"; `adapt(entry, value)` gives the props and value that fit a newly analysed image (a model's ranges, its
    classes)."""

    name: str
    step: int
    kind: str
    label: str
    props: dict = field(default_factory=dict)
    row: str | None = None
    adapt: Callable[[object, object], tuple[dict, object]] | None = None


VIEWS: dict[str, View] = {}
PAGE: list[View | Control] = []  # views and controls in page order
CONTROLS: dict[str, Control] = {}


def view(name: str, step: int, kind: str, label: str = "", reads: tuple[str, ...] = (), row: str | None = None,
         click: str | None = None, alt: Callable | None = None, stages: tuple[str, ...] = (), **props):
    """Declare the decorated function `draw(entry, options)` as the view `name` of `step`; `stages`: the trace stages
    it reads beyond the entry's own (explorer.app.cache.ENTRY_STAGES)."""
    unknown = set(reads) - set(OPTION_NAMES)
    if unknown:
        raise ValueError(f"View {name} reads unknown options {sorted(unknown)}; options are {OPTION_NAMES}.")
    if click is not None and (click not in reads or kind != "image"):
        raise ValueError(f"View {name}: a click toggles patches in an option it reads, on an image.")
    if (alt is None) != (kind != "image"):
        raise ValueError(f"View {name}: an image view, and only an image view, says what it shows with alt=.")

    def declare(draw: Callable) -> Callable:
        if name in VIEWS:
            raise ValueError(f"View {name} is declared twice.")
        VIEWS[name] = View(name, step, kind, label, tuple(reads), draw, row, click, props, alt, tuple(stages))
        PAGE.append(VIEWS[name])
        return draw
    return declare


def control(name: str, step: int, kind: str, label: str, row: str | None = None, adapt=None,
            props: dict | None = None) -> Control:
    """Declare the control that sets option `name`, placed here in its step's page order; `props` go to its
    component as they are."""
    if name not in OPTION_NAMES or name in CLICKED:
        raise ValueError(f"There is no option {name!r} for a control; options are {OPTION_NAMES[1:]}.")
    CONTROLS[name] = Control(name, step, kind, label, dict(props or {}), row, adapt)
    PAGE.append(CONTROLS[name])
    return CONTROLS[name]


def step_views(step: int) -> list[str]:
    """The names of the views of `step`, in page order."""
    return [v.name for v in VIEWS.values() if v.step == step]


def all_views() -> list[str]:
    return [name for step in range(len(STEPS)) for name in step_views(step)]


def affected(step: int, option: str) -> list[str]:
    """The views of `step` that read `option`: what a change of it redraws when that step is visible."""
    return [name for name in step_views(step) if option in VIEWS[name].reads]


def alt_text(entry, name: str, options: Options) -> str:
    """What image view `name` shows, in words (its alt text), for these options."""
    spec = VIEWS[name]
    return spec.alt(entry, options.only(spec.reads))


def stages_of(names) -> frozenset[str]:
    """The trace stages the named views read (names and patterns, as declared)."""
    return frozenset(stage for name in names for stage in VIEWS[name].stages)


def all_stages() -> frozenset[str]:
    """Every stage any view reads: what an entry is traced again with when a view needs more than it holds."""
    return stages_of(VIEWS)


def require_stages(entry, names) -> None:
    """The entry's trace made to hold what the named views read (Entry.require: traced again at most once)."""
    require = getattr(entry, "require", None)
    if require is not None:
        require(stages_of(names), all_stages())


def render_views(entry, names, options: Options) -> list:
    """The values of the named views, in order, ready to send. A view that reads no option is drawn once per entry (and
    screen layout, explorer.app.screen) and kept. The entry's trace is made to hold what they read first
    (require_stages)."""
    require_stages(entry, names)
    values = []
    for name in names:
        spec = VIEWS[name]
        if spec.reads:
            values.append(encode(spec.draw(entry, options.only(spec.reads))))
        else:
            values.append(entry.cached(("view", name, narrow()),
                                       lambda spec=spec: encode(spec.draw(entry, options.only(())))))
    return values
