"""Benchmark: `voxqa train` vs the same TRL configuration written directly, and data path vs model step.

A rendered phantom dataset and a tiny random Qwen2.5-VL (``voxqa.train.tiny``) are trained
for the same epochs on the same rows twice: through ``voxqa.train.trainer.build_trainer``
(checks, log callback) and through a plain ``trl.SFTTrainer`` with the same ``SFTConfig``
values, as a user would write it. The
ratio of training-loop samples/s (Trainer's own ``train_samples_per_second``, best of
``--repeats``) is the overhead voxqa adds (target >= 0.95). voxqa's one-time checks (every
example through the collator before training) are timed separately. The data path alone
(image decoding and collation over one epoch of the trainer's dataloader) is set against
the whole step.

    python benchmarks/train.py [--volumes 6] [--size 64] [--epochs 3] [--repeats 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import rendered_phantom  # noqa: E402

from voxqa.train.data import load_examples, to_dataset  # noqa: E402
from voxqa.train.tiny import texts, write_tiny_qwen25vl  # noqa: E402
from voxqa.train.trainer import TrainConfig, build_trainer  # noqa: E402

PROFILE = "qwen2.5-vl"


def direct_trl(rows: list[dict], model_dir: Path, out: Path, epochs: float, lr: float, batch: int) -> float:
    """samples/s of TRL's SFTTrainer on the same rows, configured by hand (no voxqa code in the loop).

    bf16 and activation checkpointing are turned off as voxqa does on CPU: TRL's defaults turn
    both on even there (bf16 autocast on CPU made the untouched defaults 3.5x slower)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import SFTConfig, SFTTrainer

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    for name, p in model.named_parameters():  # the same parts as voxqa's default recipe: vision frozen
        p.requires_grad_("visual." not in name or "visual.merger" in name)
    args = SFTConfig(output_dir=str(out), num_train_epochs=epochs, learning_rate=lr, lr_scheduler_type="cosine",
                     warmup_steps=0.03, weight_decay=0.01, optim="adamw_torch", per_device_train_batch_size=batch,
                     use_cpu=True, bf16=False, activation_checkpointing=False, max_length=None, completion_only_loss=True, logging_steps=1,
                     save_strategy="no", include_num_input_tokens_seen="non_padding", report_to="none")
    trainer = SFTTrainer(model=model, args=args, train_dataset=to_dataset(rows), processing_class=processor)
    return trainer.train().metrics["train_samples_per_second"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes", type=int, default=6)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lr = 1e-3
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ds = rendered_phantom(root, n=args.volumes, seed=0, size=args.size, context=2)
        examples = load_examples(ds, profile=PROFILE)
        model_dir = root / "qwen"
        write_tiny_qwen25vl(model_dir, texts(examples.rows) * 3)
        print(f"{len(examples.rows)} train examples, {args.size} px frames, tiny Qwen2.5-VL, "
              f"{args.epochs:g} epochs, batch {args.batch}, {args.threads} thread(s)")

        ours, theirs, checks, data_s, loop_s = [], [], [], 0.0, 0.0
        for r in range(args.repeats):
            cfg = TrainConfig(source=ds, model=model_dir, out=root / f"voxqa{r}", profile=PROFILE, epochs=args.epochs,
                              lr=lr, batch_size=args.batch, full=True)
            t0 = time.perf_counter()
            trainer, *_ = build_trainer(cfg, examples)
            checks.append(time.perf_counter() - t0)  # includes model loading, as the direct run's setup does
            t0 = time.perf_counter()
            for _ in trainer.get_train_dataloader():  # the data path alone: decode + collate one epoch
                pass
            data_s = time.perf_counter() - t0
            metrics = trainer.train().metrics
            ours.append(metrics["train_samples_per_second"])
            loop_s = metrics["train_runtime"] / args.epochs
            theirs.append(direct_trl(examples.rows, model_dir, root / f"trl{r}", args.epochs, lr, args.batch))
        best_ours, best_theirs = max(ours), max(theirs)
        print(f"voxqa train: {best_ours:.2f} samples/s; TRL written directly: {best_theirs:.2f} samples/s; "
              f"ratio {best_ours / best_theirs:.3f} (target >= 0.95); runs: {ours} vs {theirs}")
        print(f"voxqa setup (model load + every example through the collator): {min(checks):.2f} s")
        print(f"one epoch: data path alone {data_s:.2f} s of {loop_s:.2f} s per epoch "
              f"({100 * data_s / loop_s:.0f}%), model steps the rest")


if __name__ == "__main__":
    main()
