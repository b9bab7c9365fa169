"""`voxqa train`: TRL's ``SFTTrainer`` with voxqa's examples, checks, log and outputs.

Everything that trains is TRL/transformers/peft: voxqa picks the trainable parts, builds
the ``SFTConfig`` from a recipe, checks the data with the very collator the trainer uses
(``voxqa.train.data.check_examples``) and then sets ``max_length=None``, so no example is
ever cut. The same code runs on one process or under ``accelerate launch`` / ``torchrun``
(the Trainer reads the process group they set up).

Output folder::

    OUT/model/              the trained model (full weights, or a LoRA adapter whose
                            adapter_config.json names the base) with its processor: --model hf:OUT/model
    OUT/checkpoints/        Trainer checkpoints (--resume continues from the newest)
    OUT/train_log.jsonl     one line per optimizer step: loss, lr, grad_norm, samples/s, tokens/s
    OUT/train_summary.json  recipe, options, data counts, sequence lengths, final loss
    OUT/accelerate/         accelerate configs for GPUs (voxqa.train.launch)
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from voxqa.boxes.profiles import with_target_style
from voxqa.errors import InputError
from voxqa.fileio import append_bytes, write_text
from voxqa.padding import padding_record
from voxqa.train.data import EXPORT_SUMMARY, Examples, check_examples, check_pixel_limits, load_examples, to_dataset
from voxqa.train.launch import write_accelerate_configs
from voxqa.train.recipes import Lora, Recipe, get_recipe

MODEL, CHECKPOINTS, LOG, SUMMARY = "model", "checkpoints", "train_log.jsonl", "train_summary.json"
# parameter-name fragments of each part, as transformers names them (LLaVA, Qwen2/2.5/3-VL, PaliGemma)
PROJECTOR_KEYS = ("multi_modal_projector", "visual.merger", "mm_projector")
VISION_KEYS = ("vision_tower", "visual.", "vision_model")


@dataclass(frozen=True)
class TrainConfig:
    """What `voxqa train` was asked; ``None`` fields take the recipe's value."""

    source: Path
    model: Path
    out: Path
    profile: str | None = None  # None: the export's, else the recipe's model family
    recipe: str = "default"
    target_style: str | None = None  # json | native (the family's box tokens); None: the spec's
    lora: int | None = None
    full: bool = False
    epochs: float | None = None
    lr: float | None = None
    batch_size: int | None = None
    grad_accum: int | None = None
    max_frames: int | None = None
    train_vision: bool | None = None
    max_length: int | None = None
    resume: bool = False
    mode: str = "structured"
    save_steps: int | None = None
    seed: int = 0


def resolve_recipe(cfg: TrainConfig) -> Recipe:
    """The named recipe with the command line's overrides."""
    if cfg.lora is not None and cfg.full:
        raise InputError("--lora and --full exclude each other")
    recipe = get_recipe(cfg.recipe)
    overrides: dict[str, Any] = {k: v for k, v in {"epochs": cfg.epochs, "lr": cfg.lr, "batch_size": cfg.batch_size,
                                   "grad_accum": cfg.grad_accum, "max_frames": cfg.max_frames,
                                   "train_vision": cfg.train_vision}.items() if v is not None}
    if cfg.full:
        overrides["lora"] = None
    elif cfg.lora is not None:
        overrides["lora"] = replace(recipe.lora or Lora(), r=cfg.lora, alpha=2 * cfg.lora)
    recipe = replace(recipe, **overrides)
    if recipe.lora is not None and recipe.train_vision:
        raise InputError("LoRA adapts the language model only; use --full to train the vision tower")
    return recipe


def target_profile(cfg: TrainConfig, recipe: Recipe) -> str | None:
    """The profile spec of the targets: ``--profile``, else a trl export's own (None: read from
    it), else the recipe's model family; with ``--target-style`` applied."""
    spec = cfg.profile
    if spec is None and not (Path(cfg.source) / EXPORT_SUMMARY).is_file():
        spec = recipe.profile
    if spec is None:  # a trl export: its summary names the profile, a style must match it
        if cfg.target_style is None:
            return None
        spec = json.loads((Path(cfg.source) / EXPORT_SUMMARY).read_text(encoding="utf-8"))["profile"]
    return with_target_style(spec, cfg.target_style)


def part_of(name: str) -> str:
    """'projector', 'vision' or 'llm' for a parameter name."""
    if any(k in name for k in PROJECTOR_KEYS):
        return "projector"
    if any(k in name for k in VISION_KEYS):
        return "vision"
    return "llm"


def set_trainable(model: Any, recipe: Recipe) -> dict[str, int]:
    """Freeze the parts the recipe does not train (all of them under LoRA); trainable counts per part."""
    wanted = {"vision": recipe.train_vision, "projector": recipe.train_projector, "llm": recipe.train_llm}
    counts = {"vision": 0, "projector": 0, "llm": 0}
    for name, p in model.named_parameters():
        part = part_of(name)
        p.requires_grad_(recipe.lora is None and wanted[part])
        counts[part] += p.numel() if p.requires_grad else 0
    return counts


def lora_config(lora: Lora) -> Any:
    """A peft config on the language model's projections only (never the vision tower)."""
    from peft import LoraConfig

    targets = "|".join(lora.targets)
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, task_type="CAUSAL_LM",
                      target_modules=rf".*language_model.*\.({targets})")


def _log_callback(path: Path, samples_per_step: int) -> Any:
    from transformers import TrainerCallback

    class JsonlLog(TrainerCallback):
        """One JSON line per logged step with throughput since the previous line."""

        def __init__(self) -> None:
            self.last: tuple[float, int, int] | None = None

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201 - Trainer's hook
            self.last = (time.perf_counter(), state.global_step, state.num_input_tokens_seen)

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201 - Trainer's hook
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return
            now, tokens = time.perf_counter(), state.num_input_tokens_seen
            t0, step0, tokens0 = self.last
            dt = max(now - t0, 1e-9)
            row = {"step": state.global_step, "epoch": logs.get("epoch"), "loss": logs["loss"],
                   "lr": logs.get("learning_rate"), "grad_norm": logs.get("grad_norm"),
                   "samples_per_s": (state.global_step - step0) * samples_per_step / dt,
                   "tokens_per_s": (tokens - tokens0) / dt}
            append_bytes(path, (json.dumps(row) + "\n").encode("utf-8"))
            self.last = (now, state.global_step, tokens)

    return JsonlLog()


def read_log(out: Path) -> list[dict[str, Any]]:
    """The training log's rows (``OUT/train_log.jsonl``)."""
    path = Path(out) / LOG
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.is_file() else []


def _newest_checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return found[-1] if found else None


def _trim_log(out: Path, step: int) -> None:
    """Drop log lines past ``step`` (written after the checkpoint a resumed run restarts from)."""
    rows = [r for r in read_log(out) if r["step"] <= step]
    write_text(out / LOG, "".join(json.dumps(r) + "\n" for r in rows))


def build_trainer(cfg: TrainConfig, examples: Examples | None = None, callbacks: list[Any] | None = None,
                  checkpoint: Path | None = None) -> tuple[Any, Recipe, Examples, dict[str, Any]]:
    """The SFTTrainer for ``cfg`` after every data check; also the recipe, examples and facts
    for the summary. Split from ``train`` so benchmarks time the same trainer.

    ``checkpoint`` (a full fine-tune being resumed) is where the weights load from:
    transformers 5 saves checkpoints of LLaVA/Qwen-VL under their legacy parameter names,
    which the Trainer's own resume loads non-strictly, i.e. not at all, restarting from the
    base weights; ``from_pretrained`` maps the names."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import SFTConfig, SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    recipe = resolve_recipe(cfg)
    if examples is None:
        examples = load_examples(cfg.source, profile=target_profile(cfg, recipe), mode=cfg.mode,
                                 max_frames=recipe.max_frames, padded=Path(cfg.out))
    base = Path(cfg.model).resolve()  # a LoRA adapter names its base by this path
    check_pixel_limits(examples.profile, base)
    gpu = torch.cuda.is_available()
    processor = AutoProcessor.from_pretrained(base, local_files_only=True)
    weights = checkpoint if checkpoint is not None and recipe.lora is None else base
    model = AutoModelForImageTextToText.from_pretrained(
        weights, local_files_only=True, dtype=torch.bfloat16 if gpu and recipe.bf16 else torch.float32)
    trainable = set_trainable(model, recipe)

    collator = DataCollatorForVisionLanguageModeling(processor=processor, max_length=None,
                                                     completion_only_loss=True)
    dataset = to_dataset(examples.rows)
    limit = cfg.max_length or model.config.get_text_config().max_position_embeddings
    lengths = check_examples(dataset, collator, processor, examples.profile, limit)

    args = SFTConfig(
        output_dir=str(Path(cfg.out) / CHECKPOINTS),
        num_train_epochs=recipe.epochs,
        learning_rate=recipe.lr,
        lr_scheduler_type=recipe.scheduler,
        warmup_steps=recipe.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=recipe.weight_decay,
        optim=recipe.optim,
        per_device_train_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.grad_accum,
        bf16=gpu and recipe.bf16,
        activation_checkpointing=gpu and recipe.gradient_checkpointing,
        use_cpu=not gpu,
        max_length=None,  # checked above: nothing is truncated
        completion_only_loss=True,
        logging_steps=1,
        save_strategy="steps" if cfg.save_steps else "epoch",
        save_steps=cfg.save_steps or 500,
        include_num_input_tokens_seen="non_padding",
        ddp_find_unused_parameters=False,
        report_to="none",
        seed=cfg.seed,
    )
    world = args.world_size
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                         data_collator=collator, peft_config=lora_config(recipe.lora) if recipe.lora else None,
                         callbacks=[_log_callback(Path(cfg.out) / LOG,
                                                  recipe.batch_size * recipe.grad_accum * world),
                                    *(callbacks or [])])
    longest_id, longest = lengths.longest()
    facts = {"examples": len(examples.rows), "skipped_too_many_frames": examples.skipped_too_many_frames,
             "profile": examples.profile.spec, "image_padding": padding_record(examples.profile), "max_length": limit,
             "longest": {"id": longest_id, "tokens": longest},
             "tokens_total": sum(lengths.total), "tokens_trained": sum(lengths.trained),
             "trainable_parameters": trainable if recipe.lora is None else "lora", "world_size": world}
    return trainer, recipe, examples, facts


def train(cfg: TrainConfig, examples: Examples | None = None, callbacks: list[Any] | None = None
          ) -> dict[str, Any]:
    """Train, save ``OUT/model`` and return the summary (also written to ``OUT/train_summary.json``).

    ``examples`` replaces the rows read from ``cfg.source`` (a chosen subset); ``callbacks``
    are extra ``transformers.TrainerCallback`` objects (e.g. one that stops a run early)."""
    out = Path(cfg.out)
    checkpoint = _newest_checkpoint(out / CHECKPOINTS)
    if cfg.resume and checkpoint is None:
        raise InputError(f"--resume: no checkpoint under {out / CHECKPOINTS}")
    if not cfg.resume and (checkpoint is not None or (out / LOG).exists()):
        raise InputError(f"{out} holds an earlier run: pass --resume to continue it, or choose a new --out")
    trainer, recipe, _, facts = build_trainer(cfg, examples, callbacks, checkpoint if cfg.resume else None)
    if trainer.is_world_process_zero():
        out.mkdir(parents=True, exist_ok=True)
        if checkpoint is not None:
            _trim_log(out, int(checkpoint.name.split("-")[1]))
        write_accelerate_configs(recipe, out / "accelerate")
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if cfg.resume else None)
    trainer.save_model(str(out / MODEL))  # weights, or the LoRA adapter, with the processor
    log = read_log(out)
    summary = {"recipe": asdict(recipe), "options": {k: str(v) if isinstance(v, Path) else v
                                                      for k, v in asdict(cfg).items()},
               **facts, "steps": trainer.state.global_step, "interrupted": trainer.state.global_step < trainer.state.max_steps,
               "train_loss": result.training_loss, "first_loss": log[0]["loss"] if log else None,
               "last_loss": log[-1]["loss"] if log else None, "model": str(out / MODEL)}
    if trainer.is_world_process_zero():
        write_text(out / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary
