"""TRL: prompt-completion vision JSONL per split, as SFTTrainer's vision examples expect.

Schema (TRL ``docs/source/dataset_formats.md``, "Vision datasets", conversational
prompt-completion): a ``prompt`` column holding the user turn, whose ``content`` is a list of
``{"type": "image"}`` and ``{"type": "text", "text": ...}`` parts, a ``completion`` column
holding the assistant turn (a one-part list, so the column has one Arrow type), and an
``images`` column in prompt order; ``id`` names the item. These are the rows ``voxqa train``
builds (``voxqa.train.data``). ``images`` holds absolute PNG paths; cast it with
``dataset.cast_column("images", Sequence(Image()))`` to get PIL images.

Why prompt-completion and not ``messages``: TRL 1.16 computes the loss on the completion only
when the dataset has ``prompt`` and ``completion`` columns (``SFTConfig.completion_only_loss``
defaults to None, resolved in ``trl/trainer/sft_trainer.py`` L961-962), and its vision
collator then sets the prompt's labels, image tokens included, to -100
(``DataCollatorForVisionLanguageModeling._collate_prompt_completion``, L499-501). A
``messages`` row is trained on every token unless ``assistant_only_loss=True`` and the chat
template has ``{% generation %}`` markers, which Qwen's lacks (960 of 960 tokens trained,
672 of them image pads).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from voxqa.boxes.profiles import Profile
from voxqa.conversation import BoxStyle, InlineBoxes, Sample
from voxqa.export.base import write_split_jsonl


def content_parts(sample: Sample) -> list[dict[str, Any]]:
    return [{"type": "image"} if p is None else {"type": "text", "text": p} for p in sample.user]


class TrlFormat:
    name = "trl"

    def box_style(self, profile: Profile) -> BoxStyle:
        return InlineBoxes(profile)

    def write(self, samples: dict[str, list[Sample]], out: Path, profile: Profile) -> list[str]:
        return write_split_jsonl(samples, out, lambda s: {
            "id": s.item.id,
            "prompt": [{"role": "user", "content": content_parts(s)}],
            "completion": [{"role": "assistant", "content": [{"type": "text", "text": s.target}]}],
            "images": s.images,
        })
