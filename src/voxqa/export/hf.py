"""HuggingFace ``datasets``: a DatasetDict (one Dataset per split) saved with ``save_to_disk``.

Columns: ``id``, ``split``, ``task``, ``subtask``, ``question`` (boxes in the profile's
convention), ``options``, ``prompt`` (the whole user turn, ``<image>`` at each image),
``answer`` (the JSON target text), ``images`` (``Sequence(Image())``: decode to PIL) and
``frames`` (the frame index of each image). Images are given as absolute PNG paths;
current ``datasets`` versions embed the PNG bytes when saving (once per item showing the
frame), so the folder is self-contained, while older ones keep the paths.
Needs the ``export`` extra (``datasets``, ``pyarrow``), imported only when used.
"""

from __future__ import annotations

from pathlib import Path

from voxqa.boxes.profiles import Profile
from voxqa.conversation import IMAGE_TOKEN, BoxStyle, InlineBoxes, Sample
from voxqa.errors import MissingExtra
from voxqa.fileio import staged_folder


class HfFormat:
    name = "hf"

    def box_style(self, profile: Profile) -> BoxStyle:
        return InlineBoxes(profile)

    def write(self, samples: dict[str, list[Sample]], out: Path, profile: Profile) -> list[str]:
        try:
            import datasets
        except ImportError:
            raise MissingExtra("the hf export needs `pip install 'voxqa[export]'` (datasets, pyarrow)") from None
        features = datasets.Features({
            "id": datasets.Value("string"),
            "split": datasets.Value("string"),
            "task": datasets.Value("string"),
            "subtask": datasets.Value("string"),
            "question": datasets.Value("string"),
            "options": datasets.Sequence(datasets.Value("string")),
            "prompt": datasets.Value("string"),
            "answer": datasets.Value("string"),
            "images": datasets.Sequence(datasets.Image()),
            "frames": datasets.Sequence(datasets.Value("int32")),
        })
        splits = {
            split: datasets.Dataset.from_list([
                {"id": s.item.id, "split": s.item.split, "task": s.item.task, "subtask": s.item.subtask,
                 "question": s.question, "options": s.options, "prompt": s.user_text(IMAGE_TOKEN),
                 "answer": s.target, "images": s.images, "frames": s.frames}
                for s in rows
            ], features=features)
            for split, rows in samples.items()
        }
        bars = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:
            with staged_folder(out) as stage:  # datasets writes through whatever it finds in out
                datasets.DatasetDict(splits).save_to_disk(str(stage))
        finally:
            if bars:
                datasets.enable_progress_bars()
        return ["dataset_dict.json"] + sorted(splits)
