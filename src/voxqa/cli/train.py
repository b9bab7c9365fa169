"""`voxqa train`: fine-tune a vision-language model on a dataset's JSON targets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from voxqa.cli.common import console
from voxqa.errors import needs_extra
from voxqa.views.terminal import markup_safe


def train(
    source: Annotated[Path, typer.Argument(metavar="DATASET_OR_EXPORT", help="A rendered dataset folder or a trl export.")],
    model: Annotated[Path, typer.Option("--model", metavar="PATH", help="Base model folder (save_pretrained output).")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Output folder: model/, checkpoints/, train_log.jsonl.")],
    profile: Annotated[Optional[str], typer.Option("--profile", metavar="PROFILE", help="Box profile of the targets (default: the export's, else the recipe's model family: pixel for default).")] = None,
    target_style: Annotated[Optional[str], typer.Option("--target-style", metavar="json|native", help="Answer boxes in the targets as JSON numbers (default) or in the family's own tokens/tags (e.g. <loc0123>, <|box_start|>).")] = None,
    recipe: Annotated[str, typer.Option("--recipe", metavar="NAME", help="Preset: default, sgmri-qwen3vl-8b, reasonknee-qwen25vl-3b, radgrounder-paligemma2-3b.")] = "default",
    lora: Annotated[Optional[int], typer.Option("--lora", min=1, metavar="R", help="LoRA rank (alpha 2R) on the language model.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Full fine-tune (no LoRA), overriding the recipe.")] = False,
    epochs: Annotated[Optional[float], typer.Option("--epochs", metavar="N", help="Epochs (default: the recipe's).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", metavar="LR", help="Learning rate (default: the recipe's).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, metavar="N", help="Examples per device and step.")] = None,
    grad_accum: Annotated[Optional[int], typer.Option("--grad-accum", min=1, metavar="N", help="Gradient accumulation steps.")] = None,
    max_frames: Annotated[Optional[int], typer.Option("--max-frames", min=1, metavar="N", help="Leave out items with more frames (never cut).")] = None,
    train_vision: Annotated[Optional[bool], typer.Option("--train-vision/--freeze-vision", help="Train or freeze the vision tower (default: the recipe's).")] = None,
    max_length: Annotated[Optional[int], typer.Option("--max-length", min=1, metavar="N", help="Longest sequence allowed (default: the model's context).")] = None,
    mode: Annotated[str, typer.Option("--mode", metavar="MODE", help="Prompt mode of the user turn, as in `voxqa eval --mode`.")] = "structured",
    save_steps: Annotated[Optional[int], typer.Option("--save-steps", min=1, metavar="N", help="Checkpoint every N steps (default: each epoch).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in --out.")] = False,
) -> None:
    """Fine-tune a vision-language model on the JSON targets (TRL SFTTrainer; extra `train`)."""
    with needs_extra("train"):
        from voxqa.train import TrainConfig
        from voxqa.train import train as run_train
    cfg = TrainConfig(source=source, model=model, out=out, profile=profile, recipe=recipe, target_style=target_style,
                      lora=lora, full=full,
                      epochs=epochs, lr=lr, batch_size=batch_size, grad_accum=grad_accum, max_frames=max_frames,
                      train_vision=train_vision, max_length=max_length, resume=resume, mode=mode,
                      save_steps=save_steps)
    summary = run_train(cfg)
    console.print(f"[green]trained[/] {summary['examples']} examples, {summary['steps']} steps, loss "
                  f"{summary['first_loss']:.3f} -> {summary['last_loss']:.3f}: --model hf:{markup_safe(summary['model'])}",
                  soft_wrap=True)
