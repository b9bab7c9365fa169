"""A worked voxqa plug-in: a tiny local transformers causal LM answering through `generate`.

Run it next to your data (the current directory is searched for the module):

    voxqa eval DATASET --model py:tiny_transformers_plugin:make_model --out runs/tiny

Without a ``path`` model arg the factory builds a tiny randomly initialised Llama in memory
(its answers are noise, which the scoring reports as parse failures; it exists to show the
plumbing). ``python tiny_transformers_plugin.py DIR`` saves that model to DIR, and
``--model-arg path=DIR`` loads a saved model instead (``local_files_only``: nothing is
downloaded). A real model is loaded the same way; a 3D model (M3D-LaMed, RadFM) reads its own
preprocessed volume instead of the PNGs (see docs/plugins.md).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM,
                          PreTrainedModel, PreTrainedTokenizerBase)

from voxqa.eval.prompts import Prompt
from voxqa.eval.models import ShownItem


def build_tiny(seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A byte-level tokenizer and a 2-layer Llama with random weights (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(["yes no frame box"], trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", pad_token="<pad>")
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=4, vocab_size=len(tokenizer), max_position_embeddings=4096,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval(), tokenizer


def prompt_text(prompt: Prompt) -> str:
    """The prompt as one string for a text-only model.

    ``prompt.parts`` is the user turn in order: ("text", str) and ("image", absolute PNG
    path). A vision model would open each PNG where it stands; this one marks it, and a 3D
    model ignores the PNGs and loads its own volume of ``item.study_id``."""
    return "".join(value if kind == "text" else "<image>" for kind, value in prompt.parts)


class TinyTransformers:
    """The adapter: ``identity()`` and a plain (sync) ``answer``, which voxqa runs in a worker
    thread one call at a time."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 source: dict[str, Any], max_new_tokens: int):
        self.model, self.tokenizer = model, tokenizer
        self.source, self.max_new_tokens = source, max_new_tokens

    def identity(self) -> dict[str, Any]:
        """What decides the answers: which weights, and how they decode (greedy)."""
        return {**self.source, "max_new_tokens": self.max_new_tokens, "greedy": True}

    def answer(self, prompt: Prompt, item: ShownItem) -> str:
        enc = self.tokenizer(f"USER: {prompt_text(prompt)}\nASSISTANT:", return_tensors="pt")
        with torch.inference_mode():
            out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def make_model(seed: int = 0, path: str | None = None, max_new_tokens: str = "8") -> TinyTransformers:
    """The factory voxqa calls: ``seed`` comes from ``voxqa eval --seed``; ``path`` and
    ``max_new_tokens`` from ``--model-arg`` (strings, converted here)."""
    if path is None:
        model, tokenizer = build_tiny(seed)
        source: dict[str, Any] = {"model": "tiny-random-llama", "seed": seed}
    else:
        folder = Path(path).resolve()
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        source = {"path": str(folder),
                  "config_sha256": hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()}
    return TinyTransformers(model, tokenizer, source, int(max_new_tokens))


if __name__ == "__main__":  # python tiny_transformers_plugin.py DIR: save the tiny model to DIR
    model, tokenizer = build_tiny()
    model.save_pretrained(sys.argv[1])
    tokenizer.save_pretrained(sys.argv[1])
