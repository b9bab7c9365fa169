"""`voxqa train` on CPU: tiny random LLaVA and Qwen2.5-VL built from configs, tokenizers trained here.

Real TRL/transformers/peft training, no downloads, no stand-ins for voxqa code: the loss on
8 repeated items falls by more than half, the trained model answers through `hf:` with more
parseable JSON than its base, LoRA adapters load, a 2-process gloo run equals the same global
batch on one process, and bad inputs are refused before training (too long, processor vs
profile, corrupt image) while an interrupted run resumes to the uninterrupted result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")
pytest.importorskip("torchvision")  # Qwen-family processors
import torch  # noqa: E402
from helpers import rendered_phantom  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from voxqa.cli import app  # noqa: E402
from voxqa.eval.models.hf_local import HFLocal  # noqa: E402
from voxqa.answers.reply import clean_reply, json_values  # noqa: E402
from voxqa.eval.prompts import Prompt  # noqa: E402
from voxqa.train import TrainConfig, TrainDataError, read_log, train  # noqa: E402
from voxqa.train.data import Examples, load_examples  # noqa: E402
from voxqa.train.launch import FILES  # noqa: E402
from voxqa.train.recipes import RECIPES  # noqa: E402
from voxqa.train.tiny import texts, write_tiny_llava, write_tiny_qwen25vl  # noqa: E402

torch.set_num_threads(1)  # tiny models: threads only contend (pytest -n 2 on 2 cores)

def _repeated(examples: Examples, n_items: int = 2, times: int = 4) -> Examples:
    """The ``n_items`` shortest targets, each ``times`` times: 8 rows a tiny model can learn."""
    short = sorted(examples.rows, key=lambda r: len(r["completion"][0]["content"][0]["text"]))[:n_items]
    return replace(examples, rows=[r for r in short for _ in range(times)])


def _prompt(row: dict) -> Prompt:
    """A training row's user turn as the eval prompt it came from."""
    images = iter(row["images"])
    parts = tuple(("image", next(images)) if p["type"] == "image" else ("text", p["text"])
                  for p in row["prompt"][0]["content"])
    return Prompt(item_id=row["id"], parts=parts, target=row["completion"][0]["content"][0]["text"])


def _parse_rate(model_dir: Path, rows: list[dict]) -> float:
    """Share of greedy replies holding a JSON object with an "answer" (eval's structured read)."""
    adapter = HFLocal(str(model_dir), max_new_tokens=160, batch_size=len(rows))
    replies = adapter.generate([_prompt(r) for r in rows])
    return sum(any(isinstance(v, dict) and "answer" in v for _, v in json_values(clean_reply(r)))
               for r in replies) / len(rows)


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return rendered_phantom(tmp_path_factory.mktemp("train"), n=4, seed=0, size=32, context=0)


@pytest.fixture(scope="module")
def llava(ds, tmp_path_factory):
    rows = load_examples(ds).rows
    folder = tmp_path_factory.mktemp("llava") / "base"
    write_tiny_llava(folder, texts(rows) * 3)
    return folder


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_recipes_and_accelerate_configs_are_complete():
    from accelerate.commands.config.config_args import ClusterConfig

    reasonknee = RECIPES["reasonknee-qwen25vl-3b"]
    assert (reasonknee.lr, reasonknee.epochs, reasonknee.lora.r, reasonknee.lora.alpha) == (1e-5, 2, 16, 32)
    assert RECIPES["radgrounder-paligemma2-3b"].optim == "adafactor"
    assert not RECIPES["sgmri-qwen3vl-8b"].train_vision and RECIPES["sgmri-qwen3vl-8b"].distributed == "zero3"
    from voxqa.train.launch import write_accelerate_configs

    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        for path in write_accelerate_configs(RECIPES["sgmri-qwen3vl-8b"], Path(tmp)):
            cfg = ClusterConfig.from_yaml_file(path)  # accelerate reads what voxqa writes
            assert cfg.mixed_precision == "bf16" and cfg.num_processes == 8
    assert FILES == ("ddp.yaml", "zero3.yaml", "fsdp.yaml")


@pytest.mark.slow
def test_llava_full_finetune_halves_loss_and_answers_json(ds, llava, tmp_path):
    examples = _repeated(load_examples(ds))
    out = tmp_path / "run"
    summary = train(TrainConfig(source=ds, model=llava, out=out, full=True, epochs=40, lr=1e-2, batch_size=4),
                    examples=examples)
    log = read_log(out)
    assert len(log) == summary["steps"] == 80
    assert log[-1]["loss"] < log[0]["loss"] / 2, (log[0]["loss"], log[-1]["loss"])
    assert all(r["samples_per_s"] > 0 and r["tokens_per_s"] > 0 and r["lr"] is not None for r in log)
    # assistant-only loss: far fewer tokens trained on than fed (prompt and image tokens masked)
    assert 0 < summary["tokens_trained"] < summary["tokens_total"]
    assert summary["trainable_parameters"]["vision"] == 0  # the default recipe freezes the tower
    before = _parse_rate(llava, examples.rows[::4])
    after = _parse_rate(out / "model", examples.rows[::4])
    assert after > before, (before, after)
    assert sorted(p.name for p in (out / "accelerate").iterdir()) == sorted(FILES)


@pytest.fixture(scope="module")
def qwen(ds, tmp_path_factory):
    rows = load_examples(ds, profile="qwen2.5-vl").rows
    folder = tmp_path_factory.mktemp("qwen") / "base"
    write_tiny_qwen25vl(folder, texts(rows) * 3)
    return folder


@pytest.mark.slow
def test_qwen25vl_halves_loss_and_lora_adapter_loads_through_hf(ds, qwen, tmp_path):
    examples = _repeated(load_examples(ds, profile="qwen2.5-vl"))
    out = tmp_path / "full"
    summary = train(TrainConfig(source=ds, model=qwen, out=out, profile="qwen2.5-vl", full=True, epochs=12,
                                lr=1e-2, batch_size=4), examples=examples)
    log = read_log(out)
    assert log[-1]["loss"] < log[0]["loss"] / 2, (log[0]["loss"], log[-1]["loss"])
    assert summary["profile"] == "qwen2.5-vl" and summary["trainable_parameters"]["vision"] == 0

    lora = tmp_path / "lora"  # the 3DReasonKnee recipe: LoRA r16/alpha 32 on attention and MLP
    summary = train(TrainConfig(source=ds, model=qwen, out=lora, profile="qwen2.5-vl",
                                recipe="reasonknee-qwen25vl-3b", epochs=1, grad_accum=1), examples=examples)
    assert summary["trainable_parameters"] == "lora"
    adapter = json.loads((lora / "model" / "adapter_config.json").read_text())
    assert adapter["r"] == 16 and adapter["lora_alpha"] == 32 and Path(adapter["base_model_name_or_path"]) == qwen
    assert not (lora / "model" / "config.json").exists()  # base + adapter, not a second copy of the base
    assert isinstance(HFLocal(str(lora / "model"), max_new_tokens=4).generate([_prompt(examples.rows[0])])[0], str)


def test_refused_before_training(ds, llava, qwen, tmp_path):
    cfg = TrainConfig(source=ds, model=llava, out=tmp_path / "a", epochs=1)
    with pytest.raises(TrainDataError, match=r"longest is item \S+ with \d+ tokens") as err:
        train(replace(cfg, max_length=40))
    assert "never truncates" in str(err.value) and not (tmp_path / "a" / "train_log.jsonl").exists()
    # the profile's boxes assume Qwen's default limits (a 32x32 frame seen at 56x56); this processor
    # enlarges frames to 112x112, as a changed min_pixels would
    big = tmp_path / "qwen-big"
    write_tiny_qwen25vl(big, texts(load_examples(ds, profile="qwen2.5-vl").rows), min_pixels=112 * 112)
    with pytest.raises(TrainDataError, match="resizes a 32x32 frame to 112x112, but profile qwen2.5-vl writes its "
                                             "boxes for 56x56"):
        train(TrainConfig(source=ds, model=big, out=tmp_path / "b", profile="qwen2.5-vl", epochs=1))
    # a corrupt frame is named with its item before any step
    examples = load_examples(ds)
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    row = dict(examples.rows[0], images=[str(bad)] * len(examples.rows[0]["images"]))
    with pytest.raises(TrainDataError, match=f"item {row['id']}: an image cannot be read.*corrupt.png"):
        train(replace(cfg, out=tmp_path / "c"), examples=replace(examples, rows=[row, *examples.rows[1:]]))


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_weights(ds, llava, tmp_path):
    from transformers import TrainerCallback

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step == 2

    # one item twice, batch 1: 2 steps an epoch, and the result does not depend on the data order
    examples = _repeated(load_examples(ds), n_items=1, times=2)
    cfg = TrainConfig(source=ds, model=llava, out=tmp_path / "whole", full=True, epochs=2, lr=1e-3,
                      batch_size=1, save_steps=2)
    train(cfg, examples=examples)
    part = replace(cfg, out=tmp_path / "part")
    first = train(part, examples=examples, callbacks=[StopAt()])
    assert first["steps"] == 2 and first["interrupted"]
    with pytest.raises(ValueError, match="--resume"):
        train(part, examples=examples)
    resumed = train(replace(part, resume=True), examples=examples)
    assert resumed["steps"] == 4 and [r["step"] for r in read_log(part.out)] == [1, 2, 3, 4]
    whole, again = _weights(cfg.out / "model"), _weights(part.out / "model")
    assert max(float((whole[k] - again[k]).abs().max()) for k in whole) < 1e-6


@pytest.mark.slow
def test_two_processes_equal_one_process_with_the_same_global_batch(ds, llava, tmp_path):
    """torchrun, 2 CPU processes (gloo), batch 1 each vs one process with batch 2, same 2 items."""
    examples = _repeated(load_examples(ds), times=1)
    export = tmp_path / "export"  # the rows as a trl export, so the CLI run reads the same two items
    export.mkdir()
    (export / "voxqa_export.json").write_text(json.dumps({"format": "trl", "profile": "pixel"}))
    (export / "train.jsonl").write_text("".join(json.dumps(
        {"id": r["id"], "messages": r["prompt"] + r["completion"], "images": r["images"]}) + "\n"
        for r in examples.rows))
    args = ["train", str(export), "--model", str(llava), "--full", "--epochs", "2", "--lr", "1e-3"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(_free_port()), "-m", "voxqa", *args, "--out", str(tmp_path / "two"),
                          "--batch-size", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    one = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "one"), "--batch-size", "2"])
    assert one.exit_code == 0, one.output
    assert json.loads((tmp_path / "two" / "train_summary.json").read_text())["world_size"] == 2
    a, b = read_log(tmp_path / "one"), read_log(tmp_path / "two")
    assert len(a) == len(b) == 2
    assert all(abs(x["loss"] - y["loss"]) < 1e-4 for x, y in zip(a, b, strict=False)), (a, b)
    w1, w2 = _weights(tmp_path / "one" / "model"), _weights(tmp_path / "two" / "model")
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-5


@pytest.mark.slow
def test_build_export_train_eval_report_end_to_end(ds, llava, tmp_path):
    """The user's loop through the CLI: export trl -> train -> eval base and fine-tuned -> report."""
    cli = CliRunner()
    export, ft = tmp_path / "export", tmp_path / "ft"
    steps = [["export", str(ds), "--format", "trl", "--profile", "pixel", "--split", "train", "--out", str(export)],
             ["train", str(export), "--model", str(llava), "--out", str(ft), "--epochs", "1", "--lr", "1e-3"],
             ["eval", str(ds), "--model", f"hf:{llava}", "--limit", "2", "--out", str(tmp_path / "base")],
             ["eval", str(ds), "--model", f"hf:{ft / 'model'}", "--limit", "2", "--out", str(tmp_path / "tuned")],
             ["report", str(tmp_path / "base"), str(tmp_path / "tuned"), "--out", str(tmp_path / "report.html")]]
    for args in steps:
        result = cli.invoke(app, args)
        assert result.exit_code == 0, (args[0], result.output)
    summary = json.loads((ft / "train_summary.json").read_text())
    assert summary["examples"] == len(load_examples(ds).rows) and summary["profile"] == "pixel"
    page = (tmp_path / "report.html").read_text()
    assert str(llava) in page and str(ft / "model") in page
    log = [json.loads(line) for line in (ft / "train_log.jsonl").read_text().splitlines()]
    assert 'id="train-chart"' in page and page.count("<polyline") == 1  # the fine-tuned run only
    assert f"loss {log[0]['loss']:.3f} -&gt; {log[-1]['loss']:.3f} in {log[-1]['step']} steps" in page


def test_training_prompt_is_the_eval_prompt(ds, llava):
    """The text the trainer's collator renders before the target is what `voxqa eval --mode
    structured` sends through hf: (same frames, labels, boxes, chat template)."""
    from transformers import AutoProcessor
    from trl.data_utils import apply_chat_template

    from voxqa.boxes.profiles import get_profile
    from voxqa.dataset.folder import read_items, read_studies
    from voxqa.eval.models.hf_local import messages_for
    from voxqa.eval.prompts import build_prompt

    processor = AutoProcessor.from_pretrained(llava)
    sizes = {s.id: s.frame_size for s in read_studies(ds)}
    items = {it.id: it for it in read_items(ds)}
    for row in load_examples(ds).rows:
        item = items[row["id"]]
        prompt = build_prompt(item, ds, sizes[item.study_id], get_profile("pixel"), mode="structured")
        asked = processor.apply_chat_template(messages_for(prompt), add_generation_prompt=True, tokenize=False)
        rendered = apply_chat_template({"prompt": row["prompt"], "completion": row["completion"]}, processor)
        assert rendered["prompt"] == asked
        assert rendered["completion"].startswith(prompt.target)
        assert row["images"] == [v for k, v in prompt.parts if k == "image"]


def _free_port() -> int:
    """A TCP port free on loopback now (a fixed one collides with other runs on the machine)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _trl_collated(rows_file: Path, model_dir: Path, out: Path) -> tuple[dict, Any, Any]:
    """The first two rows of a JSONL file as TRL 1.16's SFTTrainer batches them, with the
    collator and completion-only setting TRL picks itself (SFTConfig defaults, no collator given)."""
    import datasets
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import SFTConfig, SFTTrainer

    data = datasets.load_dataset("json", data_files=str(rows_file), split="train", cache_dir=str(out / "cache"))
    data = data.cast_column("images", datasets.Sequence(datasets.Image()))
    processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, local_files_only=True)
    trainer = SFTTrainer(model=model, args=SFTConfig(output_dir=str(out / "ckpt"), use_cpu=True, max_length=None,
                                                     report_to="none"),
                         train_dataset=data, processing_class=processor)
    return trainer.data_collator([trainer.train_dataset[i] for i in range(2)]), trainer, processor


def test_trl_export_is_trained_on_the_completion_only(ds, qwen, tmp_path):
    """The trl export's rows through TRL's own SFTTrainer (default SFTConfig, its own collator)
    and the tiny Qwen2.5-VL (whose chat template has no generation tags): every prompt token,
    image pads included, is labelled -100 and exactly the assistant turn is trained. The same
    rows as `messages` (the old export) train on every token."""
    from voxqa.export import export_dataset

    export_dataset(ds, "trl", tmp_path / "trl", convention="qwen2.5-vl", split="train")
    batch, trainer, processor = _trl_collated(tmp_path / "trl" / "train.jsonl", qwen, tmp_path)
    assert trainer.completion_only_loss is True  # resolved by TRL from the prompt/completion columns
    rows = [json.loads(line) for line in (tmp_path / "trl" / "train.jsonl").read_text().splitlines()[:2]]
    pad_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for i, row in enumerate(rows):
        ids, labels = batch["input_ids"][i], batch["labels"][i]
        trained = labels != -100
        assert int((ids == pad_id).sum()) > 0 and not trained[ids == pad_id].any()
        target = row["completion"][0]["content"][0]["text"]
        # the trained tokens are the assistant turn as the chat template closes it, nothing else
        assert processor.tokenizer.decode(ids[trained]) == target + "<|im_end|>\n"
        assert torch.equal(labels[trained], ids[trained])
        first = int(trained.nonzero()[0])
        assert trained[first:].sum() + (batch["attention_mask"][i][first:] == 0).sum() == len(ids) - first

    # before: the same rows in the messages form are trained on every real token
    old = tmp_path / "messages.jsonl"
    old.write_text("".join(json.dumps({"id": r["id"], "messages": r["prompt"] + r["completion"],
                                       "images": r["images"]}) + "\n" for r in rows))
    batch, trainer, _ = _trl_collated(old, qwen, tmp_path / "old")
    assert trainer.completion_only_loss is False
    real = batch["attention_mask"] == 1
    assert bool((batch["labels"][real] != -100).all())


def test_a_recipe_trains_in_its_model_familys_profile(ds, tmp_path):
    """--recipe sets the family's profile (not pixel whatever the recipe) and names its model;
    --target-style native writes the family's own box tokens; --profile and a trl export's own
    profile still win."""
    from voxqa.export import export_dataset
    from voxqa.train.trainer import resolve_recipe, target_profile

    def spec(**kw) -> str | None:
        cfg = TrainConfig(model=tmp_path, out=tmp_path / "o", **{"source": ds, **kw})
        return target_profile(cfg, resolve_recipe(cfg))

    assert spec() == "pixel"
    assert spec(recipe="sgmri-qwen3vl-8b") == "qwen3-vl"
    assert spec(recipe="reasonknee-qwen25vl-3b") == "qwen2.5-vl"
    assert spec(recipe="radgrounder-paligemma2-3b") == "paligemma"
    assert {n: r.model_id for n, r in RECIPES.items() if n != "default"} == {
        "sgmri-qwen3vl-8b": "Qwen/Qwen3-VL-8B-Instruct", "reasonknee-qwen25vl-3b": "Qwen/Qwen2.5-VL-3B-Instruct",
        "radgrounder-paligemma2-3b": "google/paligemma2-3b-pt-224"}
    assert spec(recipe="radgrounder-paligemma2-3b", profile="radgrounder") == "radgrounder"
    native = spec(recipe="radgrounder-paligemma2-3b", target_style="native")
    assert native == "paligemma:target=native"
    answers = [json.loads(r["completion"][0]["content"][0]["text"])["answer"]
               for r in load_examples(ds, profile=native).rows]
    assert any(isinstance(a, str) and "<loc" in a for a in answers)

    export = tmp_path / "trl"
    export_dataset(ds, "trl", export, convention=native, split="train")
    assert spec(source=export, recipe="reasonknee-qwen25vl-3b") is None  # the export's own profile
    assert load_examples(export).profile.spec == native
    with pytest.raises(TrainDataError, match="exported with profile"):
        load_examples(export, profile=spec(source=export, target_style="json"))
