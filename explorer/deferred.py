"""Modules imported when they are first used, not when the module that names them is.

torch takes seconds to import (torchvision seconds more), and the app's page needs neither to be built: the model
menu, the steps' words and the controls are all known without them. So the modules on the app's start-up path
(explorer.weights, explorer.families, explorer.images and explorer.app's) name torch and the explorer modules built
on it as `deferred("torch")`: the page is up first, and the first analysis (or the warm-up right after the launch)
imports them.

Why not importlib.util.LazyLoader (or lazy_loader.load, built on it)? On Python < 3.12 its module swaps its class
before the module has run, and a second thread that touches it meanwhile sees a half-made module
(scientific-python/lazy-loader#88, a CPython bug); here many request threads may touch torch at once. A `Deferred`
asks importlib.import_module on every attribute access: the first import is guarded by importlib's per-module lock,
and later ones are one dictionary lookup.
"""
from __future__ import annotations

import importlib


class Deferred:
    """Stands for the module `name`; `deferred.attr` imports it on first use and returns `module.attr`."""

    __slots__ = ("_name",)

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str):
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self) -> str:
        return f"<deferred module {self._name!r}>"


def deferred(name: str) -> Deferred:
    """A stand-in for the module `name`, imported when one of its attributes is first asked for."""
    return Deferred(name)
