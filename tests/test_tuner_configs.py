"""The LLaMA-Factory and ms-swift exports write complete, runnable configs: every key one of the
tool's argument names, a sequence limit above the longest example (measured with a real
processor, or the stated upper bound, which holds against that processor), the pixel limits
the profile's boxes assume, and the eval profile spec that reads the trained model's boxes.

LLaMA-Factory and ms-swift are not installed here; their argument names are the dataclass fields
of their released code (``tests/tuner_args/*.txt``, each file naming the commit and files read)
plus transformers' ``Seq2SeqTrainingArguments``, which both parse with ``HfArgumentParser``
(unknown keys are an error in both: LLaMA-Factory ``hparams/parser.py`` ``_parse_args``,
ms-swift ``swift/pipelines/base.py`` ``_parse_args``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from helpers import rendered_phantom
from transformers import Seq2SeqTrainingArguments

from voxqa.boxes.profiles import get_profile
from voxqa.errors import InputError
from voxqa.export import SUMMARY, export_dataset
from voxqa.export.tuners import MARGIN, Row, TunerSetup, measure, processor_length
from voxqa.train.data import load_examples
from voxqa.train.tiny import texts, write_tiny_qwen25vl

ARGS = Path(__file__).parent / "tuner_args"
HF = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}
SPEC = "qwen2.5-vl:max_pixels=602112"  # the ms-swift MAX_PIXELS


def _names(file: str) -> set[str]:
    return {ln.strip() for ln in (ARGS / file).read_text().splitlines() if ln.strip() and not ln.startswith("#")}


LLAMAFACTORY = _names("llamafactory-0.9.5.txt") | HF
SWIFT = _names("ms-swift-4.6.0.dev0.txt") | HF


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:
    """Knee phantom frames rendered at 900 px: above LLaMA-Factory's default 768 x 768 limit and
    above the profile's 602112 pixels, so both resizes matter."""
    return rendered_phantom(tmp_path_factory.mktemp("tuners"), n=6, seed=2, size=900, context=2,
                            fractions=(0.5, 0.25, 0.25))


@pytest.fixture(scope="module")
def processor(ds, tmp_path_factory) -> Path:
    """A tiny Qwen2.5-VL whose real Qwen2-VL image processor uses the profile's limits."""
    folder = tmp_path_factory.mktemp("qwen") / "base"
    write_tiny_qwen25vl(folder, texts(load_examples(ds, profile=SPEC).rows) * 3, min_pixels=3136, max_pixels=602112)
    return folder


def _areas(out: Path, rows: list[dict]) -> list[int]:
    from PIL import Image

    return [Image.open(p).size[0] * Image.open(p).size[1] for r in rows for p in r["images"]]


def test_llamafactory_config_is_complete_and_measured(ds, processor, tmp_path) -> None:
    out = tmp_path / "lf"
    summary = export_dataset(ds, "llamafactory", out, convention=SPEC, setup=TunerSetup(processor=processor))
    text = (out / "llamafactory_args.yaml").read_text()
    cfg = yaml.safe_load(text)
    assert set(cfg) <= LLAMAFACTORY, set(cfg) - LLAMAFACTORY
    tuner = summary["tuner"]
    longest = tuner["longest_example"]
    assert longest["how"] == "measured" and longest["tokens"] > 0
    assert cfg["cutoff_len"] == longest["tokens"] + MARGIN >= longest["tokens"]
    # complete: model, template, data, method
    assert cfg["model_name_or_path"] == "Qwen/Qwen2.5-VL-7B-Instruct" and cfg["template"] == "qwen2_vl"
    assert cfg["dataset_dir"] == str(out.resolve()) and cfg["dataset"] == "voxqa_train"
    assert json.loads((out / "dataset_info.json").read_text())["voxqa_train"]["file_name"] == "voxqa_train.json"
    assert cfg["stage"] == "sft" and cfg["do_train"] is True and cfg["finetuning_type"] == "lora"
    # images reach the processor as rendered; the processor's limits are the profile's
    rows = [r for f in out.glob("voxqa_*.json") if f.name != SUMMARY for r in json.loads(f.read_text())]
    areas = _areas(out, rows)
    assert (cfg["image_max_pixels"], cfg["image_min_pixels"]) == (max(areas), min(areas)) and max(areas) > 768 * 768
    assert tuner["processor_pixel_limits"] == {"min_pixels": 3136, "max_pixels": 602112}
    assert "min_pixels 3136, max_pixels 602112" in text
    spec = get_profile(SPEC).spec  # qwen2.5-vl:max_pixels=602112,min_pixels=3136
    assert f"--profile {spec}" in text and tuner["eval_profile"] == spec
    assert json.loads((out / SUMMARY).read_text())["tuner"] == tuner


def test_swift_config_is_complete_and_names_the_grid(ds, processor, tmp_path) -> None:
    out = tmp_path / "sw"
    summary = export_dataset(ds, "swift", out, convention=SPEC, setup=TunerSetup(processor=processor))
    cfg = yaml.safe_load((out / "swift_sft.yaml").read_text())
    env = cfg.pop("ENV")
    assert set(cfg) <= SWIFT, set(cfg) - SWIFT
    record = json.loads((out / "swift_args.json").read_text())
    assert record == {k: v for k, v in summary["tuner"].items() if k != "tuner"}
    longest = record["longest_example"]
    assert longest["how"] == "measured" and cfg["max_length"] == longest["tokens"] + MARGIN
    # MAX_PIXELS moves ms-swift's grid: it is the profile's, and the eval spec names it
    assert env == {"QWENVL_BBOX_FORMAT": "new", "MAX_PIXELS": "602112", "MIN_PIXELS": "3136"}
    assert record["eval_profile"] == get_profile(SPEC).spec == "qwen2.5-vl:max_pixels=602112,min_pixels=3136"
    assert cfg["model"] == "Qwen/Qwen2.5-VL-7B-Instruct" and cfg["template"] == "qwen2_5_vl"
    assert cfg["dataset"] == [str((out / "train.jsonl").resolve())] and Path(cfg["dataset"][0]).is_file()
    assert cfg["truncation_strategy"] == "delete" and cfg["tuner_type"] == "lora"
    assert (out / "swift_env.sh").read_text() == "".join(f"export {k}={v}\n" for k, v in env.items())


@pytest.mark.parametrize("fmt", ["llamafactory", "swift"])
def test_the_stated_bound_holds_against_the_processor(ds, processor, tmp_path, fmt) -> None:
    """Without a processor the limit is an upper bound on what the processor measures."""
    measured = export_dataset(ds, fmt, tmp_path / "m", convention=SPEC, setup=TunerSetup(processor=processor))
    bound = export_dataset(ds, fmt, tmp_path / "b", convention=SPEC)
    m, b = measured["tuner"]["longest_example"], bound["tuner"]["longest_example"]
    assert b["how"] == "estimated" and "upper bound" in b["detail"]
    assert b["tokens"] >= m["tokens"]


def test_a_processor_on_another_grid_is_refused(ds, processor, tmp_path) -> None:
    with pytest.raises(InputError, match="max_pixels: processor 602112, profile 12845056"):
        export_dataset(ds, "llamafactory", tmp_path / "x", convention="qwen2.5-vl", setup=TunerSetup(processor=processor))


def test_a_profile_without_a_family_asks_for_the_model(ds, tmp_path) -> None:
    export_dataset(ds, "llamafactory", tmp_path / "p", convention="pixel")
    text = (tmp_path / "p" / "llamafactory_args.yaml").read_text()
    assert "model_name_or_path" not in yaml.safe_load(text) and "--base-model" in text
    export_dataset(ds, "llamafactory", tmp_path / "q", convention="pixel", setup=TunerSetup(base_model="/models/m"))
    assert yaml.safe_load((tmp_path / "q" / "llamafactory_args.yaml").read_text())["model_name_or_path"] == "/models/m"


def test_measuring_per_image_equals_one_processor_call_per_row(ds, processor) -> None:
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(processor, local_files_only=True)
    profile = get_profile(SPEC)
    rows = load_examples(ds, profile=SPEC).rows
    picked = sorted(rows, key=lambda r: len(r["images"]))[::max(1, len(rows) // 4)][:5]  # 1 to many frames
    for r in picked:
        row = Row(r["id"], [None if p["type"] == "image" else p["text"] for p in r["prompt"][0]["content"]],
                  r["completion"][0]["content"][0]["text"], r["images"])
        assert measure([row], profile, processor).tokens == processor_length(proc, row)
