"""A local Hugging Face vision-language model (`hf:PATH`), run in-process with transformers.

The folder must hold what ``AutoProcessor`` and ``AutoModelForImageTextToText`` load (a
``save_pretrained`` output), or a peft LoRA adapter with its processor (what ``voxqa train
--lora`` writes): the base model named in ``adapter_config.json`` is loaded and the adapter
merged into it, so a fine-tuned model is asked exactly like its base. Nothing is downloaded
(``local_files_only=True``). The prompt's parts become one user message of {"type": "image"}
/ {"type": "text"} content parts, rendered by the processor's chat template; the PNGs are
fed as RGB PIL images in prompt order.
Decoding is greedy (``do_sample=False``) and only the new tokens are decoded.

Options (``--model-arg KEY=VALUE``, parsed by ``hf_options``): ``device`` (default ``cuda``
when torch sees a GPU, else ``cpu``), ``dtype`` (``auto``, ``float32``, ``bfloat16``,
``float16``; default float32 on CPU, the checkpoint's own (``auto``) elsewhere),
``attn_implementation`` (``eager``, ``sdpa``, ``flash_attention_2``, ...; default transformers'
choice), ``batch_size`` (default 4) and ``max_new_tokens``. Its default is sized before the
run (``size_replies``): the longest structured target of the selected items, counted with
this model's tokenizer, plus a margin (a quarter, at least ``MIN_MARGIN`` tokens), so a
perfect answer is never cut off; run.json states the cap and how it was found. A reply
that stops because it hit the cap (no end-of-sequence token among its new tokens) is raised
as ``TruncatedReply``: the run records it as truncated, not as the model's answer.

Batching: ``answer`` is async. Concurrent calls (the runner's ``concurrency``) are queued;
a drain task takes up to ``batch_size`` pending prompts at a time and generates them as one
left-padded batch in a worker thread (``asyncio.to_thread``), so the event loop stays free
and one generation runs at a time. The batch size is the smaller of ``batch_size`` and the
runner's concurrency. A failed batch fails each of its items (as ``RuntimeError``, which the
runner records and retries on the next run).

``identity()`` hashes config.json, or adapter_config.json, only (not the weights):
re-saving different weights under the same config in the same folder is not detected.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

from collections.abc import Iterable, Mapping

from voxqa.errors import InputError
from voxqa.eval.models.base import ModelAdapter, PermanentError, TruncatedReply
from voxqa.eval.prompts import Prompt
from voxqa.schema import Item

DTYPES = ("auto", "float32", "bfloat16", "float16")
MIN_MARGIN = 32  # tokens above the longest target: a model may phrase the same answer longer


def hf_options(args: Mapping[str, str]) -> dict[str, Any]:
    """``--model-arg`` strings as HFLocal's keyword arguments; an unknown key or a bad value
    is an error naming it (a typo never runs another configuration)."""
    known = {"device": str, "dtype": str, "attn_implementation": str, "batch_size": int, "max_new_tokens": int}
    out: dict[str, Any] = {}
    for key, value in args.items():
        if key not in known:
            raise InputError(f"hf: unknown --model-arg {key}; known: {', '.join(sorted(known))}")
        if known[key] is int:
            if not value.strip().isdigit() or int(value) < 1:
                raise InputError(f"hf: --model-arg {key}={value!r}: expected a positive integer")
            out[key] = int(value)
        elif key == "dtype" and value not in DTYPES:
            raise InputError(f"hf: --model-arg dtype={value!r}; known: {', '.join(DTYPES)}")
        else:
            out[key] = value
    return out


def messages_for(prompt: Prompt) -> list[dict[str, Any]]:
    """The chat messages of a prompt: one user turn of image / text content parts."""
    content: list[dict[str, Any]] = []
    for kind, value in prompt.parts:
        if kind == "image":
            content.append({"type": "image"})
        else:
            content.append({"type": "text", "text": value})
    return [{"role": "user", "content": content}]


def _merged_adapter(folder: Path, base: str, load: dict[str, Any]) -> Any:
    """The base model with the LoRA adapter in ``folder`` merged in."""
    try:
        from peft import PeftModel
        from transformers import AutoModelForImageTextToText
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise PermanentError("hf:PATH with a LoRA adapter needs peft: pip install 'voxqa[train]'") from exc
    if not (Path(base) / "config.json").is_file():
        raise PermanentError(f"hf:{folder}: the adapter's base model {base} is not a local model folder")
    model = AutoModelForImageTextToText.from_pretrained(base, **load)
    return PeftModel.from_pretrained(model, str(folder), local_files_only=True).merge_and_unload()


class HFLocal(ModelAdapter):
    def __init__(self, path: str, *, max_new_tokens: int | None = None, batch_size: int = 4,
                 device: str | None = None, dtype: str | None = None, attn_implementation: str | None = None):
        folder = Path(path)
        adapter = folder / "adapter_config.json"
        config = adapter if adapter.is_file() else folder / "config.json"
        if not config.is_file():
            raise PermanentError(f"hf:{path}: no config.json or adapter_config.json in {folder} "
                                 f"(need a save_pretrained folder)")
        try:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise PermanentError("hf:PATH needs the 'hf' extra and torch: pip install 'voxqa[hf]'") from exc
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype is None:
            dtype = "float32" if device == "cpu" else "auto"
        if dtype not in DTYPES:
            raise InputError(f"hf:{path}: dtype {dtype!r}; known: {', '.join(DTYPES)}")
        self.path, self.spec = str(path), f"hf:{path}"
        self.max_new_tokens, self.batch_size, self.device = max_new_tokens, max(1, batch_size), device
        self.dtype, self.attn_implementation = dtype, attn_implementation
        self.reply_cap: dict[str, Any] = ({"rule": "given"} if max_new_tokens is not None else
                                          {"rule": "not sized yet"})
        self._torch = torch
        self.config_sha256 = hashlib.sha256(config.read_bytes()).hexdigest()
        self.processor = AutoProcessor.from_pretrained(self.path, local_files_only=True)
        tok = getattr(self.processor, "tokenizer", None)
        if tok is not None:
            tok.padding_side = "left"  # decoder-only batched generation
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
        self._tokenizer = tok
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        # transformers >= 4.56 calls it `dtype` (the old `torch_dtype` is deprecated)
        load: dict[str, Any] = {"local_files_only": True, "dtype": torch_dtype}
        if attn_implementation is not None:
            load["attn_implementation"] = attn_implementation
        try:
            if adapter.is_file():
                self.model = _merged_adapter(folder, json.loads(adapter.read_text())["base_model_name_or_path"], load)
            else:
                self.model = AutoModelForImageTextToText.from_pretrained(self.path, **load)
            self.model.to(device).eval()
        except (ValueError, ImportError, RuntimeError) as exc:  # bad attention kind, absent device
            if isinstance(exc, PermanentError):
                raise
            raise PermanentError(f"hf:{path}: cannot load on device={device}, dtype={dtype}, "
                                 f"attn_implementation={attn_implementation}: {' '.join(str(exc).split())[:300]}") from exc
        self.image_token_id = getattr(self.processor, "image_token_id", None)
        eos = self.model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if tok is not None and tok.eos_token_id is not None:
            eos.append(tok.eos_token_id)
        self.eos_ids = sorted(set(eos))  # a reply holding one of these ended by itself
        # what each generate() call fed the model (prompts, images, image placeholder tokens)
        self.stats: list[dict[str, int]] = []
        self._pending: list[tuple[Prompt, asyncio.Future[str]]] = []
        self._drainer: asyncio.Task[None] | None = None

    def identity(self) -> dict[str, Any]:
        return {"spec": self.spec, "path": str(Path(self.path).resolve()),
                "config_sha256": self.config_sha256, "max_new_tokens": self.max_new_tokens,
                "reply_cap": self.reply_cap, "device": self.device, "dtype": self.dtype,
                "attn_implementation": self.attn_implementation, "greedy": True}

    def size_replies(self, targets: Iterable[str]) -> None:
        """Without a given ``max_new_tokens``: the longest target in this model's tokens plus
        a quarter (at least ``MIN_MARGIN``), recorded in ``reply_cap``."""
        if self.max_new_tokens is not None and self.reply_cap["rule"] == "given":
            return
        encode = self._tokenizer if self._tokenizer is not None else self.processor
        lengths = [len(encode(t, add_special_tokens=False)["input_ids"]) for t in targets]
        longest = max(lengths, default=0)
        margin = max(MIN_MARGIN, -(-longest // 4))
        self.max_new_tokens = longest + margin
        self.reply_cap = {"rule": "longest target + margin", "targets": len(lengths),
                          "longest_target_tokens": longest, "margin": margin}

    async def answer(self, prompt: Prompt, item: Item) -> str:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        self._pending.append((prompt, fut))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.sleep(0)  # let the callers started together enqueue
            self._pending = [(p, f) for p, f in self._pending if not f.done()]  # cancelled callers
            batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size:]
            if not batch:
                break
            try:
                outs = await asyncio.to_thread(self.replies, [p for p, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every item of the batch fails the same way
                err = exc if isinstance(exc, (RuntimeError, OSError)) else RuntimeError(f"{type(exc).__name__}: {exc}")
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            for (_, fut), (text, cut) in zip(batch, outs, strict=False):
                if fut.done():
                    continue
                if cut:
                    fut.set_exception(TruncatedReply(text, self.max_new_tokens or 0))
                else:
                    fut.set_result(text)

    def inputs(self, prompts: list[Prompt]) -> Any:
        """The processor's tensors for a batch of prompts (images in prompt order)."""
        from PIL import Image

        from voxqa.dataset.paths import check_png

        texts, images = [], []
        for p in prompts:
            texts.append(self.processor.apply_chat_template(messages_for(p), add_generation_prompt=True,
                                                            tokenize=False))
            for kind, value in p.parts:
                if kind == "image":
                    with Image.open(check_png(value, "image")) as im:
                        images.append(im.convert("RGB"))
        kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True}
        if images:
            kwargs["images"] = images
        return self.processor(**kwargs), len(images)

    def generate(self, prompts: list[Prompt]) -> list[str]:
        """Greedy answers for a batch of prompts, cut off or not (blocking)."""
        return [text for text, _ in self.replies(prompts)]

    def replies(self, prompts: list[Prompt]) -> list[tuple[str, bool]]:
        """Greedy answers for a batch of prompts (blocking; called in a worker thread), each
        with whether it used all ``max_new_tokens`` without an end-of-sequence token (cut off)."""
        torch = self._torch
        if self.max_new_tokens is None:
            raise PermanentError(f"{self.spec}: max_new_tokens is neither given nor sized (size_replies)")
        enc, n_images = self.inputs(prompts)
        enc = enc.to(self.device)
        ids = enc["input_ids"]
        n_image_tokens = int((ids == self.image_token_id).sum()) if self.image_token_id is not None else -1
        self.stats.append({"prompts": len(prompts), "images": n_images, "image_tokens": n_image_tokens})
        pad = self._tokenizer.pad_token_id if self._tokenizer is not None else None
        with torch.inference_mode():
            out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
                                      pad_token_id=pad)
        new = out[:, ids.shape[1]:]
        ended = torch.isin(new, torch.tensor(self.eos_ids, device=new.device)).any(dim=1).tolist()
        decode = self._tokenizer.batch_decode if self._tokenizer is not None else self.processor.batch_decode
        texts = [t.strip() for t in decode(new, skip_special_tokens=True)]
        full = new.shape[1] >= self.max_new_tokens
        return [(t, full and not e) for t, e in zip(texts, ended, strict=True)]

    async def close(self) -> None:
        """Nothing to release between runs (the weights stay loaded for the next run)."""
