"""`hf:PATH`: a tiny randomly initialised LLaVA built here, loaded back through HFLocal (CPU, offline)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from helpers import rendered_phantom

from voxqa.boxes.profiles import get_profile
from voxqa.dataset.folder import read_items, read_studies
from voxqa.eval.models.base import TruncatedReply
from voxqa.eval.models.hf_local import HFLocal
from voxqa.eval.prompts import build_prompt
from voxqa.eval.run import PREDICTIONS, RUN, RunConfig, read_predictions, run_eval

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
SIZE, PATCH = 30, 15
TOKENS_PER_IMAGE = (SIZE // PATCH) ** 2  # "default" strategy drops CLS


def _write_tiny_llava(folder: Path, corpus: list[str]) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    specials = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", pad_token="<pad>",
                                  extra_special_tokens={"image_token": "<image>"})
    tok.chat_template = CHAT_TEMPLATE
    image_processor = CLIPImageProcessor(size={"shortest_edge": SIZE},
                                         crop_size={"height": SIZE, "width": SIZE})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=PATCH,
                               vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE,
                               image_token="<image>", num_additional_image_tokens=1)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                              num_attention_heads=4, image_size=SIZE, patch_size=PATCH, projection_dim=32)
    text = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=4, vocab_size=len(tok), max_position_embeddings=4096,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                       pad_token_id=tok.pad_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=tok.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="default", vision_feature_layer=-1,
                         image_seq_length=TOKENS_PER_IMAGE)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    ds = rendered_phantom(root, n=4, seed=0, size=32, context=2)
    items = [it for it in read_items(ds) if it.images]
    frame_sizes = {s.id: s.frame_size for s in read_studies(ds)}
    prompts = [build_prompt(it, ds, frame_sizes[it.study_id], get_profile("pixel")) for it in items]
    corpus = [t for p in prompts for k, t in p.parts if k == "text"] * 3
    model_dir = root / "tiny-llava"
    _write_tiny_llava(model_dir, corpus)
    return ds, items, prompts, model_dir


def test_hf_local_answers_deterministically(setup):
    _, items, prompts, model_dir = setup
    adapter = HFLocal(str(model_dir), max_new_tokens=8, batch_size=2)
    assert adapter.spec == f"hf:{model_dir}"
    ident = adapter.identity()
    assert ident["greedy"] is True and ident["max_new_tokens"] == 8 and len(ident["config_sha256"]) == 64

    chosen = list(zip(prompts, items, strict=False))[:3]

    async def all_at_once():
        return await asyncio.gather(*(adapter.answer(p, it) for p, it in chosen), return_exceptions=True)

    # 8 new tokens of a random model: every reply is cut off, raised with what it wrote
    first = [r.text for r in asyncio.run(all_at_once())]
    assert all(isinstance(a, str) for a in first)
    # concurrent calls were batched (batch_size 2: 3 prompts -> 2 generate calls)
    assert [s["prompts"] for s in adapter.stats] == [2, 1]
    n_images = sum(1 for p, _ in chosen for k, _ in p.parts if k == "image")
    assert n_images > 0
    assert sum(s["images"] for s in adapter.stats) == n_images
    # each image is one <image> in the template, expanded to its feature tokens by the processor
    assert sum(s["image_tokens"] for s in adapter.stats) == n_images * TOKENS_PER_IMAGE
    for p, _ in chosen:
        text = adapter.processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"} if k == "image" else {"type": "text", "text": v}
                                          for k, v in p.parts]}], add_generation_prompt=True, tokenize=False)
        assert text.count("<image>") == sum(1 for k, _ in p.parts if k == "image")

    # deterministic: again, one at a time (no batching, so no padding), same answers
    second = []
    for p, it in chosen:
        with pytest.raises(TruncatedReply) as cut:
            asyncio.run(adapter.answer(p, it))
        second.append(cut.value.text)
    assert second == first
    assert adapter.generate([chosen[0][0]]) == [first[0]]
    assert adapter.replies([chosen[0][0]]) == [(first[0], True)]


def test_hf_local_through_run_eval(setup, tmp_path):
    ds, _, _, model_dir = setup
    adapter = HFLocal(str(model_dir), max_new_tokens=8, batch_size=4)
    out = tmp_path / "run"
    counts = asyncio.run(run_eval(RunConfig(dataset=ds, out=out, split=None, limit=3), adapter))
    assert counts["ok"] == 3 and counts["failed"] == 0
    records = read_predictions(out / PREDICTIONS)
    assert len(records) == 3 and all(r["status"] == "ok" and isinstance(r["raw"], str)
                                     for r in records.values())
    assert (out / RUN).is_file()
    # a second run finds everything done and generates nothing
    before = len(adapter.stats)
    again = asyncio.run(run_eval(RunConfig(dataset=ds, out=out, split=None, limit=3), adapter))
    assert again["already_done"] == 3 and len(adapter.stats) == before


def test_hf_local_missing_folder_is_permanent(tmp_path):
    from voxqa.eval.models.base import PermanentError

    with pytest.raises(PermanentError):
        HFLocal(str(tmp_path / "nope"))


def test_cli_eval_with_hf_spec(setup, tmp_path):
    from typer.testing import CliRunner

    from voxqa.cli import app

    ds, _, _, model_dir = setup
    res = CliRunner().invoke(app, ["eval", str(ds), "--model", f"hf:{model_dir}", "--out",
                                   str(tmp_path / "run"), "--split", "all", "--limit", "2",
                                   "--model-arg", "max_new_tokens=4", "--model-arg", "dtype=float32"])
    assert res.exit_code == 0, res.output
    ident = json.loads((tmp_path / "run" / "run.json").read_text())["identity"]["model"]
    assert ident["max_new_tokens"] == 4 and ident["dtype"] == "float32"
    lines = (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all('"status":"ok"' in line for line in lines)
    assert (tmp_path / "run" / "results.json").is_file()


def _target_tokens(adapter: HFLocal, prompts) -> list[int]:
    tok = adapter.processor.tokenizer
    return [len(tok(p.target, add_special_tokens=False)["input_ids"]) for p in prompts]


def test_reply_cap_sized_from_the_longest_target(setup, tmp_path):
    """Without max_new_tokens the cap is the longest selected target in this model's tokens plus
    a margin, stated in run.json: a perfect answer fits, where the old fixed 64 cut most off."""
    from voxqa.eval.models.hf_local import MIN_MARGIN

    ds, items, prompts, model_dir = setup
    adapter = HFLocal(str(model_dir), batch_size=4)
    lengths = _target_tokens(adapter, prompts)  # every rendered item, structured targets
    assert sum(n > 64 for n in lengths) > len(lengths) // 2  # the old cap cut off most perfect answers
    adapter.size_replies(p.target for p in prompts)
    longest = max(lengths)
    assert adapter.reply_cap == {"rule": "longest target + margin", "targets": len(prompts),
                                 "longest_target_tokens": longest, "margin": max(MIN_MARGIN, -(-longest // 4))}
    assert adapter.max_new_tokens == longest + adapter.reply_cap["margin"]
    assert sum(n >= adapter.max_new_tokens for n in lengths) == 0

    # through run_eval: sized on the run's own selection (mode structured, 2 items) before run.json
    sized = HFLocal(str(model_dir))
    sized.replies = lambda ps: [("{}", False)] * len(ps)  # no generation needed to check the sizing
    out = tmp_path / "run"
    asyncio.run(run_eval(RunConfig(dataset=ds, out=out, split=None, limit=2, mode="structured"), sized))
    ident = json.loads((out / RUN).read_text())["identity"]["model"]
    sizes = {s.id: s.frame_size for s in read_studies(ds)}
    chosen = [build_prompt(it, ds, sizes[it.study_id], get_profile("pixel"), "structured") for it in items[:2]]
    want = max(_target_tokens(sized, chosen))
    assert ident["reply_cap"]["longest_target_tokens"] == want and ident["reply_cap"]["targets"] == 2
    assert ident["max_new_tokens"] == want + ident["reply_cap"]["margin"]
    assert ident["device"] == "cpu" and ident["dtype"] == "float32"


def test_truncated_generation_recorded_as_truncated(setup, tmp_path):
    """A reply that hits max_new_tokens without its end-of-sequence token is stored with
    truncated: true and a parse error saying so, never parsed as the answer; one that ends is
    read as usual."""
    from voxqa.eval.score import score_run

    ds, _, _, model_dir = setup
    adapter = HFLocal(str(model_dir), max_new_tokens=4)
    out = tmp_path / "cut"
    counts = asyncio.run(run_eval(RunConfig(dataset=ds, out=out, split=None, limit=3), adapter))
    assert counts["ok"] == 3  # not a failed request: retrying greedy decoding would stop at the same place
    records = read_predictions(out / PREDICTIONS)
    for r in records.values():
        assert r["truncated"] is True and r["parse_ok"] is False and r["parsed"] is None
        assert "truncated" in r["parse_error"] and "max_new_tokens=4" in r["parse_error"]
        assert isinstance(r["raw"], str)
    results = score_run(out)
    assert results["truncated"] == 3 and results["overall"]["parse_failures"]["count"] == 3

    # a model whose every token ends the reply: nothing is truncated
    ended = HFLocal(str(model_dir), max_new_tokens=4)
    every = list(range(ended.model.config.text_config.vocab_size))
    ended.model.generation_config.eos_token_id = every
    ended.eos_ids = every
    out2 = tmp_path / "ended"
    asyncio.run(run_eval(RunConfig(dataset=ds, out=out2, split=None, limit=3), ended))
    assert not any(r.get("truncated") for r in read_predictions(out2 / PREDICTIONS).values())
    assert score_run(out2)["truncated"] == 0


def test_model_args_reach_the_hf_adapter(setup):
    from voxqa.errors import InputError
    from voxqa.eval.models import make_model

    ds, _, _, model_dir = setup
    adapter = make_model(f"hf:{model_dir}", ds, model_args={
        "device": "cpu", "dtype": "bfloat16", "attn_implementation": "eager", "batch_size": "2",
        "max_new_tokens": "300"})
    assert isinstance(adapter, HFLocal)
    assert (adapter.device, adapter.dtype, adapter.batch_size, adapter.max_new_tokens) == ("cpu", "bfloat16", 2, 300)
    assert adapter.model.dtype.__str__() == "torch.bfloat16"
    assert adapter.model.config._attn_implementation == "eager"
    ident = adapter.identity()
    assert ident["reply_cap"] == {"rule": "given"} and ident["attn_implementation"] == "eager"
    for bad in ({"max_tokens": "5"}, {"batch_size": "0"}, {"dtype": "float8"}):
        with pytest.raises(InputError):
            make_model(f"hf:{model_dir}", ds, model_args=bad)
    with pytest.raises(InputError, match="not this built-in spec"):
        make_model("random", ds, model_args={"device": "cpu"})


def test_truncated_reply_survives_pickling():
    """A Ray replica's TruncatedReply reaches the driver whole (Ray pickles exceptions)."""
    import pickle

    back = pickle.loads(pickle.dumps(TruncatedReply("{\"reasoning\": \"the", 12)))
    assert isinstance(back, TruncatedReply) and (back.text, back.limit) == ("{\"reasoning\": \"the", 12)
