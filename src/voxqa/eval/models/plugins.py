"""Plug-in models: adapters written outside voxqa, run in-process like the built-in ones.

Two ways to name one (docs/plugins.md has the worked example):

* ``py:MODULE:FACTORY``: import ``MODULE`` (a dotted name, looked up on ``sys.path`` and then
  in the current directory, so an adapter file next to the data just works) and take
  ``FACTORY`` (a dotted attribute path) from it;
* ``NAME`` or ``NAME:ARG``: the factory an installed package registers under ``NAME`` in the
  ``voxqa.models`` entry-point group; ``ARG`` is passed as ``arg``.

The factory is called with keyword arguments: those of ``dataset`` (the dataset folder,
resolved), ``profile`` (the box convention's name) and ``seed`` that its signature names (all
of them if it takes ``**kwargs``), ``arg`` when the spec has one, and every model arg
(``--model-arg KEY=VALUE``, values are strings). A model arg the factory does not take is an
error, not ignored, so a typo never runs the wrong model.

The factory returns an object with ``identity() -> dict`` and ``answer(prompt, item) -> str``
(``prompt`` without its ``target``, ``item`` a ``ShownItem``: only what the prompt shows, never
the gold; under ``--control mirrored`` the mirrored reading),
async or plain (a plain one runs in a worker thread, one call at a time, so the event loop
stays free and the plug-in need not be thread-safe); optional ``preflight()`` and ``close()``
are called like the built-in adapters'. voxqa wraps it in :class:`PluginModel`, whose
identity (recorded in run.json) holds the spec, the factory, the model args and the plug-in's
own identity, so runs of different plug-ins or settings never mix on resume.

Every problem while loading is a :class:`PluginError` (a ``VoxqaError``, so the command line
prints it as one line) that starts with the spec.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect
import re
import sys
import threading
import warnings
from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import orjson

from voxqa.errors import VoxqaError
from voxqa.eval.redact import redact
from voxqa.eval.models.base import ModelAdapter, PermanentError, ServerConfigError, ShownItem, TruncatedReply
from voxqa.eval.prompts import Prompt
from voxqa.schema import Item

GROUP = "voxqa.models"
BUILTIN_NAMES = frozenset({"random", "prior", "oracle", "openai", "hf", "py"})
CONTEXT_ARGS = ("dataset", "profile", "seed")


class PluginError(VoxqaError, ValueError):
    """A plug-in could not be loaded; the message is one line that starts with the spec."""


class PluginClashWarning(UserWarning):
    """An installed plug-in is named like a built-in spec, which wins."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def parse_model_args(pairs: list[str]) -> dict[str, str]:
    """``--model-arg KEY=VALUE`` options as a dict (the value may hold ``=``; a key given twice is an error)."""
    args: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise PluginError(f"--model-arg {pair!r}: expected KEY=VALUE with KEY a Python identifier")
        if key in args:
            raise PluginError(f"--model-arg {key}: given twice")
        args[key] = value
    return args


def installed() -> list[str]:
    """Names of the installed ``voxqa.models`` plug-ins."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def find(name: str) -> EntryPoint | None:
    """The installed plug-in called ``name``, if any; two packages claiming it is an error."""
    eps = {ep.value: ep for ep in entry_points(group=GROUP, name=name)}
    if len(eps) > 1:
        raise PluginError(f"{name}: {len(eps)} installed plug-ins claim this name in {GROUP} "
                          f"({'; '.join(_origin(ep) for ep in eps.values())}); uninstall all but one")
    return next(iter(eps.values()), None)


def _origin(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{ep.value} from {dist.name} {dist.version}" if dist is not None else ep.value


def warn_clash(name: str) -> None:
    """Say so when an installed plug-in shares the name of the built-in spec being used."""
    for ep in entry_points(group=GROUP, name=name):
        warnings.warn(f"the installed plug-in {name!r} ({_origin(ep)}) is named like the built-in "
                      f"spec {name!r}, which is used instead; rename the plug-in's entry point",
                      PluginClashWarning, stacklevel=3)


def _import_factory(spec: str, module_name: str, attr: str) -> Callable[..., Any]:
    """``module_name``'s attribute ``attr``; the current directory is searched after sys.path."""
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)  # after installed packages: a local file never shadows them
        importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        top = module_name.split(".")
        if exc.name is not None and exc.name in {".".join(top[:i]) for i in range(1, len(top) + 1)}:
            raise PluginError(f"{spec}: no module {module_name!r} on sys.path or in {cwd}") from None
        raise PluginError(f"{spec}: importing {module_name} failed: {_one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - any import failure of foreign code is one line
        raise PluginError(f"{spec}: importing {module_name} failed: {_one_line(exc)}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            where = getattr(module, "__file__", None) or module_name
            raise PluginError(f"{spec}: module {module_name} ({where}) has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _call_factory(spec: str, factory: Any, what: str, context: dict[str, Any],
                  arg: str | None, model_args: Mapping[str, Any]) -> Any:
    """Call ``factory`` with the context it names, ``arg`` and every model arg."""
    if not callable(factory):
        raise PluginError(f"{spec}: {what} is not callable (it is a {type(factory).__name__})")
    clash = sorted(set(model_args) & {*CONTEXT_ARGS, "arg"})
    if clash:
        raise PluginError(f"{spec}: model arg {clash[0]!r} is reserved (voxqa passes it)")
    try:
        sig: inspect.Signature | None = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature to read (some builtins): pass everything
        sig = None
    takes_any = sig is None or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    kwargs = {k: v for k, v in context.items() if takes_any or k in sig.parameters}
    if arg is not None:
        kwargs["arg"] = arg
    kwargs.update(model_args)
    if sig is not None:
        try:
            sig.bind(**kwargs)
        except TypeError as exc:
            raise PluginError(f"{spec}: {what} cannot be called with {sorted(kwargs)} ({exc}); "
                              f"its parameters: {list(sig.parameters)}") from None
    try:
        return factory(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the plug-in's own failure, reported in one line
        raise PluginError(f"{spec}: the factory {what} raised {_one_line(exc)}") from None


SECRET_NAME = re.compile(r"(?i)(^|_)(api_?key|key|token|secret|password|passwd|credentials?|auth)$")  # not max_new_tokens


def _masked(value: Any) -> Any:
    """What run.json may hold of a plug-in's settings: values under secret-looking names and
    token-shaped strings (``redact``) masked, however deep (a plug-in may echo its arguments)."""
    if isinstance(value, dict):
        return {k: "<redacted>" if SECRET_NAME.search(str(k)) else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return redact(value) if isinstance(value, str) else value

class PluginModel(ModelAdapter):
    """A plug-in's adapter as the runner sees it: a checked protocol and a combined identity."""

    def __init__(self, spec: str, factory: str, inner: Any, model_args: Mapping[str, Any]):
        missing = [n for n in ("identity", "answer") if not callable(getattr(inner, n, None))]
        if missing:
            raise PluginError(f"{spec}: the factory returned a {type(inner).__name__} without "
                              f"{' and '.join(m + '()' for m in missing)} (see docs/plugins.md)")
        self.spec, self.factory, self.inner = spec, factory, inner
        self.model_args = _masked({k: str(v) for k, v in sorted(model_args.items())})
        self._is_async = inspect.iscoroutinefunction(inner.answer)
        self._one_at_a_time = threading.Lock()  # plain answers: one worker thread at a time
        try:
            own = inner.identity()
        except Exception as exc:  # noqa: BLE001
            raise PluginError(f"{spec}: identity() raised {_one_line(exc)}") from None
        if not isinstance(own, dict):
            raise PluginError(f"{spec}: identity() returned a {type(own).__name__}, not a dict")
        try:
            orjson.dumps(own)
        except TypeError as exc:
            raise PluginError(f"{spec}: identity() is not JSON ({exc})") from None

    def identity(self) -> dict[str, Any]:
        return {"spec": self.spec, "factory": self.factory, "model_args": self.model_args,
                "plugin": _masked(self.inner.identity())}

    async def answer(self, prompt: Prompt, item: Item) -> str:
        """The plug-in's answer to what the prompt shows: the prompt without its target and
        the item's ``ShownItem``, never the gold."""
        shown, blind = ShownItem.of(item, prompt), dataclasses.replace(prompt, target="")
        try:
            if self._is_async:
                raw = await self.inner.answer(blind, shown)
            else:
                raw = await asyncio.to_thread(self._answer_in_thread, blind, shown)
        except (PermanentError, RuntimeError, OSError, ServerConfigError, TruncatedReply):
            raise  # the runner's own classes: recorded (or stopping the run) as for any adapter
        except Exception as exc:  # noqa: BLE001 - a plug-in bug fails its item, not the run
            raise RuntimeError(_one_line(exc)) from exc
        if not isinstance(raw, str):
            raise PermanentError(f"{self.spec}: answer() returned a {type(raw).__name__}, not a str")
        return raw

    def _answer_in_thread(self, prompt: Prompt, item: ShownItem) -> Any:
        with self._one_at_a_time:
            return self.inner.answer(prompt, item)

    async def preflight(self) -> None:
        await self._maybe("preflight")

    async def close(self) -> None:
        await self._maybe("close")

    async def _maybe(self, name: str) -> None:
        hook = getattr(self.inner, name, None)
        if callable(hook):
            result = hook()
            if inspect.isawaitable(result):
                await result


def load_py(spec: str, context: dict[str, Any], model_args: Mapping[str, Any]) -> PluginModel:
    """The adapter of a ``py:MODULE:FACTORY`` spec."""
    module_name, _, attr = spec[len("py:"):].partition(":")
    if not module_name or not attr:
        raise PluginError(f"{spec}: expected py:MODULE:FACTORY, e.g. py:my_adapter:make_model")
    factory = _import_factory(spec, module_name, attr)
    target = f"{module_name}:{attr}"
    return PluginModel(spec, target, _call_factory(spec, factory, target, context, None, model_args),
                       model_args)


def load_entry_point(spec: str, ep: EntryPoint, context: dict[str, Any],
                     model_args: Mapping[str, Any]) -> PluginModel:
    """The adapter of an installed plug-in's spec ``NAME`` or ``NAME:ARG``."""
    _, colon, arg = spec.partition(":")
    try:
        factory = ep.load()
    except Exception as exc:  # noqa: BLE001 - foreign code
        raise PluginError(f"{spec}: loading the plug-in {_origin(ep)} failed: {_one_line(exc)}") from None
    inner = _call_factory(spec, factory, ep.value, context, arg if colon else None, model_args)
    return PluginModel(spec, ep.value, inner, model_args)
