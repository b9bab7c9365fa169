"""Tiny random vision-language models for trying `voxqa train` offline (and for its tests).

Built from configs with random weights and a byte-level BPE tokenizer trained on the
dataset's own texts, so the whole build -> train -> eval loop runs on a CPU in seconds with
nothing downloaded. They learn the targets they are trained on and nothing else: a check of
the plumbing, not a model. A LLaVA (CLIP tower, Llama LM) and a Qwen2.5-VL with its real
image processor (which needs torchvision)::

    python -m voxqa.train.tiny DATASET --out tiny-llava [--kind qwen2.5-vl]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

LLAVA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'assistant' %}</s>{% endif %}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT: {% endif %}"
)
QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tokenizer(corpus: list[str], specials: list[str], **kw: Any) -> Any:
    """A 400-token byte-level BPE trained on ``corpus`` (any text encodes; no unknown bytes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    bpe = Tokenizer(models.BPE(unk_token=specials[0]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=bpe, **kw)


def write_tiny_llava(folder: Path, corpus: list[str], size: int = 30, patch: int = 15) -> None:
    """A LLaVA whose CLIP tower sees ``size`` px frames as (size/patch)^2 tokens each."""
    import torch
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)
    tok = _tokenizer(corpus, ["<unk>", "<pad>", "<s>", "</s>", "<image>"], bos_token="<s>", eos_token="</s>",
                     unk_token="<unk>", pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
    tok.chat_template = LLAVA_TEMPLATE
    n_tokens = (size // patch) ** 2
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": size},
                                                                  crop_size={"height": size, "width": size}),
                               tokenizer=tok, patch_size=patch, vision_feature_select_strategy="default",
                               chat_template=LLAVA_TEMPLATE, image_token="<image>", num_additional_image_tokens=1)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                                       image_size=size, patch_size=patch, projection_dim=32),
        text_config=LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=4, vocab_size=len(tok), max_position_embeddings=4096,
                                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                pad_token_id=tok.pad_token_id),
        image_token_index=tok.convert_tokens_to_ids("<image>"), vision_feature_select_strategy="default",
        vision_feature_layer=-1, image_seq_length=n_tokens)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = tok.pad_token_id, tok.eos_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def write_tiny_qwen25vl(folder: Path, corpus: list[str], min_pixels: int = 56 * 56,
                        max_pixels: int = 28 * 28 * 1280) -> None:
    """A Qwen2.5-VL with the real Qwen2-VL image processor (smart_resize with these limits)."""
    import torch
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
    tok = _tokenizer(corpus, specials, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    tok.chat_template = QWEN_TEMPLATE
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels),
                                    tokenizer=tok, video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN_TEMPLATE)
    config = Qwen2_5_VLConfig(
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=4096,
                         rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
                         bos_token_id=None, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=64,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                           fullatt_block_indexes=[0]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = ids["<|endoftext|>"], ids["<|im_end|>"]
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def texts(rows: list[dict]) -> list[str]:
    """Every text part of training rows (what the tokenizer is trained on)."""
    return [p["text"] for r in rows for m in r["prompt"] + r["completion"] for p in m["content"]
            if p["type"] == "text"]


WRITERS = {"llava": write_tiny_llava, "qwen2.5-vl": write_tiny_qwen25vl}


def main() -> None:
    from voxqa.train.data import load_examples

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path, help="a rendered dataset folder (its train texts train the tokenizer)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--kind", choices=sorted(WRITERS), default="llava")
    args = ap.parse_args()
    profile = "qwen2.5-vl" if args.kind == "qwen2.5-vl" else "pixel"
    WRITERS[args.kind](args.out, texts(load_examples(args.dataset, profile=profile).rows) * 3)
    print(f"wrote a tiny random {args.kind} to {args.out}")


if __name__ == "__main__":
    main()
