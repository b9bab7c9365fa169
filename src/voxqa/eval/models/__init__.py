"""Model adapters by spec: `random`, `prior`, `oracle`, `openai:MODEL` (needs --base-url),
`hf:PATH` (a local transformers image-text-to-text model; needs torch and the `hf` extra),
`py:MODULE:FACTORY` and installed `voxqa.models` entry points (plug-ins, see plugins.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from voxqa.answers import ANSWER_TYPES
from voxqa.boxes.profiles import get_profile
from voxqa.dataset.folder import read_items, read_studies
from voxqa.errors import InputError
from voxqa.eval.models.base import ModelAdapter, PermanentError, ShownItem
from voxqa.eval.models.baselines import Oracle, Prior, Random
from voxqa.eval.models.openai_chat import OpenAIChat
from voxqa.eval.models.plugins import (BUILTIN_NAMES, PluginError, find, installed, load_entry_point, load_py,
                                      parse_model_args, warn_clash)

SPECS = ("random", "prior", "oracle", "openai:MODEL", "hf:PATH", "py:MODULE:FACTORY")


def make_model(spec: str, dataset: Path, *, profile: str = "pixel", base_url: str | list[str] | None = None,
               seed: int = 0, api_key_env: str = "OPENAI_API_KEY", timeout: float = 120.0,
               max_retries: int = 5, model_args: Mapping[str, Any] | None = None) -> ModelAdapter:
    """The adapter for ``spec``; baselines learn what they need from the train split.

    ``model_args`` go to a plug-in's factory as keyword arguments, or to ``hf:PATH`` as its
    options (device, dtype, attn_implementation, batch_size, max_new_tokens; other built-ins take none);
    several ``base_url``s are replicas of one served model, load-balanced."""
    name = spec.partition(":")[0]
    context = {"dataset": Path(dataset).resolve(), "profile": profile, "seed": seed}  # see docs/plugins.md
    if name == "py":
        return load_py(spec, context, model_args or {})
    if name not in BUILTIN_NAMES:
        ep = find(name)
        if ep is None:
            raise InputError(f"unknown model spec {spec!r}; known: {_known()}")
        return load_entry_point(spec, ep, context, model_args or {})
    if model_args and name != "hf":
        raise InputError(f"{spec}: model args are for hf:PATH and plug-ins (py:MODULE:FACTORY or an "
                         f"installed plug-in), not this built-in spec; got {', '.join(sorted(model_args))}")
    warn_clash(name)
    if spec == "oracle":
        return Oracle()
    if spec in ("random", "prior"):
        train = [it for it in read_items(dataset) if it.split == "train"]
        if spec == "prior":
            return Prior(train, read_studies(dataset), get_profile(profile).frame_base)
        numbers: dict[str, list[float]] = defaultdict(list)
        for it in train:
            if ANSWER_TYPES[it.answer.type].numeric:
                numbers[it.template].append(cast(float, it.answer.value))  # numeric types hold numbers
        return Random(get_profile(profile), seed, {t: sorted(set(v)) for t, v in numbers.items()})
    if spec.startswith("openai:"):
        if not base_url:
            raise InputError("openai:MODEL needs --base-url (e.g. http://localhost:8000/v1)")
        return OpenAIChat(spec.split(":", 1)[1], base_url, api_key_env=api_key_env,
                          timeout=timeout, max_retries=max_retries, seed=seed)
    if spec.startswith("hf:"):
        from voxqa.eval.models.hf_local import HFLocal, hf_options  # transformers is an optional extra

        return HFLocal(spec.split(":", 1)[1], **hf_options(model_args or {}))
    raise InputError(f"unknown model spec {spec!r}; known: {_known()}")


def _known() -> str:
    """The spec forms, then the installed plug-ins' names."""
    return ", ".join([*SPECS, *(f"{n} (plug-in)" for n in installed() if n not in BUILTIN_NAMES)])


__all__ = ["ModelAdapter", "PermanentError", "PluginError", "SPECS", "ShownItem", "make_model", "parse_model_args"]
