"""Model adapters by spec: `random`, `prior`, `oracle`, `openai:MODEL` (needs --base-url),
`hf:PATH` (a local transformers image-text-to-text model; needs torch and the `hf` extra)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from voxqa.boxes.conventions import get_profile
from voxqa.dataset.folder import read_items, read_studies
from voxqa.eval.models.base import ModelAdapter, PermanentError
from voxqa.eval.models.baselines import Oracle, Prior, Random
from voxqa.eval.models.openai_chat import OpenAIChat

SPECS = ("random", "prior", "oracle", "openai:MODEL", "hf:PATH")


def make_model(spec: str, dataset: Path, *, profile: str = "pixel", base_url: str | None = None,
               seed: int = 0, api_key_env: str = "OPENAI_API_KEY", timeout: float = 120.0,
               max_retries: int = 5) -> ModelAdapter:
    """The adapter for ``spec``; baselines learn what they need from the train split."""
    if spec == "oracle":
        return Oracle()
    if spec in ("random", "prior"):
        train = [it for it in read_items(dataset) if it.split == "train"]
        if spec == "prior":
            return Prior(train, read_studies(dataset))
        numbers: dict[str, list[float]] = defaultdict(list)
        for it in train:
            if it.answer.type in ("number", "grade"):
                numbers[it.template].append(it.answer.value)
        return Random(get_profile(profile), seed, {t: sorted(set(v)) for t, v in numbers.items()})
    if spec.startswith("openai:"):
        if not base_url:
            raise ValueError("openai:MODEL needs --base-url (e.g. http://localhost:8000/v1)")
        return OpenAIChat(spec.split(":", 1)[1], base_url, api_key_env=api_key_env,
                          timeout=timeout, max_retries=max_retries, seed=seed)
    if spec.startswith("hf:"):
        from voxqa.eval.models.hf_local import HFLocal  # transformers is an optional extra

        return HFLocal(spec.split(":", 1)[1])
    raise ValueError(f"unknown model spec {spec!r}; known: {', '.join(SPECS)}")


__all__ = ["ModelAdapter", "PermanentError", "SPECS", "make_model"]
