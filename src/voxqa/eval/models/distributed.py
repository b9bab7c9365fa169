"""A model adapter spread over Ray actors: ``voxqa eval --executor ray``.

Each actor builds the same adapter with ``make_model`` once (weights load once per worker:
a GPU node per replica for ``hf:`` or plug-in models) and answers prompts sent to it; the
driver keeps the run loop, so prompts, retries, resume, the run identity and scoring are the
local ones. Requests go to the actor with the fewest in flight. The identity recorded in
run.json is the underlying adapter's, so a run may be resumed with or without Ray.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from voxqa.eval.models.base import ModelAdapter, TruncatedReply
from voxqa.eval.prompts import Prompt
from voxqa.schema import Item


class _Holder:
    """One replica: the adapter ``make_model`` builds on the worker."""

    def __init__(self, spec: str, dataset: str, kwargs: dict[str, Any]):
        from voxqa.eval.models import make_model

        self.model = make_model(spec, Path(dataset), **kwargs)

    def identity(self) -> dict[str, Any]:
        return self.model.identity()

    async def preflight(self) -> None:
        await self.model.preflight()

    def size_replies(self, targets: list[str]) -> dict[str, Any]:
        self.model.size_replies(targets)
        return self.model.identity()

    async def answer(self, prompt: Prompt, item: Item) -> str:
        return await self.model.answer(prompt, item)

    async def close(self) -> None:
        await self.model.close()


class RayModels(ModelAdapter):
    """``spec`` on ``replicas`` Ray actors (Ray must be initialised: see voxqa.executors)."""

    def __init__(self, spec: str, dataset: Path, replicas: int, **kwargs: Any):
        import ray

        holder = ray.remote(_Holder)
        self.ray, self.spec = ray, spec
        self.actors: list[Any] = [holder.remote(spec, str(Path(dataset).resolve()), kwargs) for _ in range(max(1, replicas))]
        try:
            self._identity = ray.get(self.actors[0].identity.remote())  # load errors surface here
        except ray.exceptions.RayActorError as exc:  # make_model failed on the worker: its own error
            failed = next((a for a in exc.args if isinstance(a, ray.exceptions.RayTaskError)), None)
            if isinstance(getattr(failed, "cause", None), Exception):
                raise failed.cause from None
            raise
        self._in_flight = [0] * len(self.actors)

    def identity(self) -> dict[str, Any]:
        return self._identity

    async def preflight(self) -> None:
        await self.actors[0].preflight.remote()

    def size_replies(self, targets: Iterable[str]) -> None:
        """Every replica sizes its reply cap alike; the identity becomes the sized one."""
        shown = list(targets)
        self._identity = self.ray.get([a.size_replies.remote(shown) for a in self.actors])[0]

    async def answer(self, prompt: Prompt, item: Item) -> str:
        i = min(range(len(self.actors)), key=self._in_flight.__getitem__)
        self._in_flight[i] += 1
        try:
            return await self.actors[i].answer.remote(prompt, item)
        except TruncatedReply as exc:  # Ray's wrapper of the replica's: raised as a local one
            raise TruncatedReply(exc.text, exc.limit) from None
        except self.ray.exceptions.RayActorError as exc:  # the replica died: a failed request, retried on resume
            raise RuntimeError(f"model replica {i} lost: {str(exc).splitlines()[0]}") from None
        finally:
            self._in_flight[i] -= 1

    async def close(self) -> None:
        for actor in self.actors:
            await actor.close.remote()
            self.ray.kill(actor)
