"""Named training presets taken from the source benchmarks' released training code.

Each recipe says which parts of the model train (vision tower, projector, language model),
whether LoRA is used, the optimiser settings and the GPU settings the seed ran with
(bf16, gradient checkpointing, DeepSpeed ZeRO-3 or FSDP through an ``accelerate`` config
that voxqa writes, see ``voxqa.train.launch``). Sources are the facts collected in
``shared/reference/source-benchmarks.md`` (§1.6, §3.3, §4.3). Command-line options override
single fields (``dataclasses.replace``), so a recipe is a starting point, not a lock.

The seeds' known training bugs are not copied: 3DReasonKnee trained on prompt and padding
tokens and truncated its text below its image tokens; voxqa always trains on the assistant
turn only and refuses examples longer than the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from voxqa.errors import InputError

Distributed = Literal["none", "zero3", "fsdp"]
# attention and MLP projections of Llama/Qwen-style language models (3DReasonKnee's targets)
ATTENTION_MLP = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Lora:
    """LoRA on the language model's linear layers (the vision tower keeps its weights)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    targets: tuple[str, ...] = ATTENTION_MLP


@dataclass(frozen=True)
class Recipe:
    """What trains and how; ``source`` says where the numbers come from."""

    name: str
    source: str
    lr: float = 2e-5
    epochs: float = 3.0
    scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.01
    optim: str = "adamw_torch"
    batch_size: int = 1
    grad_accum: int = 1
    train_vision: bool = False
    train_projector: bool = True
    train_llm: bool = True
    lora: Lora | None = None
    # GPU settings (ignored on CPU): what the seed ran with
    bf16: bool = False
    gradient_checkpointing: bool = False
    distributed: Distributed = "none"
    max_frames: int | None = None
    # the model family: its box profile (the targets' convention unless --profile says
    # otherwise) and the released base model the seed trained (a local copy goes to --model)
    profile: str = "pixel"
    model_id: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe(
        name="default",
        source="voxqa: full fine-tune of projector and language model, vision frozen",
        lr=2e-5, epochs=3, warmup_ratio=0.03,
    ),
    Recipe(
        name="sgmri-qwen3vl-8b",
        source="SGMRI-VQA qwen3_vl_8b_brains_combined_full.sh (Qwen3-VL-8B full SFT, 8xH200)",
        lr=2e-5, epochs=3, scheduler="cosine", warmup_ratio=0.03, weight_decay=0.01,
        batch_size=1, grad_accum=8, train_vision=False, train_projector=False, train_llm=True,
        bf16=True, gradient_checkpointing=True, distributed="zero3",
        profile="qwen3-vl", model_id="Qwen/Qwen3-VL-8B-Instruct",
        notes=("LLM only (tune_mm_llm True, vision and merger frozen)",
               "profile qwen3-vl, the model family's 0-1000 boxes; the seed's own <bbx>[x, y, w, h]</bbx> "
               "targets with 1-based frames are --profile sgmri",
               "the seed showed 16 video frames while its prompt named every slice; voxqa shows "
               "the item's frames with their `Frame k:` labels, as in evaluation"),
    ),
    Recipe(
        name="reasonknee-qwen25vl-3b",
        source="3DReasonKnee sft_qwen25vl3b.py (Qwen2.5-VL-3B-Instruct LoRA)",
        lr=1e-5, epochs=2, scheduler="linear", warmup_ratio=0.0, weight_decay=0.01,
        batch_size=2, grad_accum=8, train_vision=False, train_projector=False, train_llm=True,
        lora=Lora(r=16, alpha=32, dropout=0.05, targets=ATTENTION_MLP),
        bf16=True, gradient_checkpointing=True, distributed="none",
        profile="qwen2.5-vl", model_id="Qwen/Qwen2.5-VL-3B-Instruct",
        notes=("the seed padded text to 2,048 tokens beside 8,192 image embeddings and trained on "
               "prompt and padding; voxqa sizes the sequence from the processor and masks the prompt",),
    ),
    Recipe(
        name="radgrounder-paligemma2-3b",
        source="RadGrounder configs/radgrounder_detection.json (PaliGemma-2 3B, 1xH100)",
        lr=5e-5, epochs=6, scheduler="cosine", warmup_ratio=0.1, weight_decay=0.01, optim="adafactor",
        batch_size=24, grad_accum=12, train_vision=False, train_projector=True, train_llm=True,
        bf16=True, gradient_checkpointing=True, distributed="fsdp",
        profile="paligemma", model_id="google/paligemma2-3b-pt-224",
        notes=("vision tower frozen, projector and language model fully trained (no LoRA)",
               "profile paligemma, the family's <locYYYY> grid (with --target-style native its own "
               "tokens); RadGrounder's 512-bin <p bbox=...> tags are --profile radgrounder"),
    ),
)}


def get_recipe(name: str) -> Recipe:
    """The preset called ``name``, or a ValueError listing the known ones."""
    try:
        return RECIPES[name]
    except KeyError:
        raise InputError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}") from None
