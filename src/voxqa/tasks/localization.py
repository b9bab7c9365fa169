"""Localization: where is a finding (frame-indexed boxes) and on which frames is it?

Every kept box of the source is evidence of the volume-level "where" item of its label, so
no annotation is left unasked, unless the volume's rendered frame set (``FramePolicy``, a
function of the frame count only) misses one of the label's frames: then the volume-level
items of that label are not asked (counted in ``ctx.skipped``), as the model could not see it. Frame-level items ask about each instance's key frame (its
largest box) and answer with all boxes of that label on that frame.
"""

from __future__ import annotations

from collections.abc import Sequence

from voxqa.schema import Item
from voxqa.tasks.base import BuildContext, StudyView, cite, frames_text, key_frame, make_item

TASK = "localization"


def _boxes(ev: list) -> dict:
    return {"type": "boxes", "value": [{"frame": e.frame, "box": list(e.box)} for e in ev]}


class Localization:
    name = TASK

    def generate(self, studies: Sequence[StudyView], ctx: BuildContext) -> list[Item]:
        out: list[Item] = []
        for v in studies:
            for label in v.boxed_labels:
                ev = v.evidence_for(label=label)
                frames = sorted({e.frame for e in ev})
                if not ctx.shows(v, ev):  # the rendered frame set would miss some boxes
                    ctx.skip(f"{TASK}/where/volume")
                    ctx.skip(f"{TASK}/which_frames/volume")
                else:
                    out += self._volume_items(v, label, ev, frames)
                for k in sorted({key_frame(f) for f in v.instances_of(label)}):
                    ev_k = v.evidence_for(label=label, frame=k)
                    out.append(make_item(
                        v, task=TASK, subtask="where", frame=k, label=label,
                        question=f"Where is {label} on frame {k}? Give its bounding box(es).",
                        answer=_boxes(ev_k), answer_text=cite(ev_k), evidence=ev_k,
                        reasoning=f"On frame {k}, {label} is annotated at: {cite(ev_k)}.",
                        chance=None,
                    ))
        return out

    def _volume_items(self, v: StudyView, label: str, ev: list, frames: list[int]) -> list[Item]:
        return [
            make_item(
                v, task=TASK, subtask="where", frame=None, label=label,
                question=f"Where is {label} in this volume? Give each box with its frame.",
                answer=_boxes(ev), answer_text=cite(ev), evidence=ev,
                reasoning=f"{label} is annotated with {len(ev)} box(es): {cite(ev)}.",
                chance=None,
            ),
            make_item(
                v, task=TASK, subtask="which_frames", frame=None, label=label,
                question=f"On which frames is {label} visible?",
                answer={"type": "frames", "value": frames},
                answer_text=f"frames {frames_text(frames)}", evidence=ev,
                reasoning=f"Boxes of {label} lie on frames {frames_text(frames)}: {cite(ev)}.",
                chance=None,
            ),
        ]
