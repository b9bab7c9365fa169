"""Answer types: one module per kind of answer, registered here by its ``answer.type``.

``ANSWER_TYPES[item.answer.type]`` is the ``AnswerType`` (``voxqa.answers.base``) that
prompts, training targets, parsing, scoring, baselines, the blind audit and the views ask.
A new answer type is its schema model (``voxqa.schema``), one module here, its entry below
and its test (``tests/test_answer_types.py`` checks every schema type is registered).
"""

from __future__ import annotations

from voxqa.answers.base import AnswerType
from voxqa.answers.box3d import BOX3D
from voxqa.answers.boxes import BOXES
from voxqa.answers.choice import CHOICE
from voxqa.answers.frames import FRAMES
from voxqa.answers.grade import GRADE
from voxqa.answers.multi_choice import MULTI_CHOICE
from voxqa.answers.number import NUMBER
from voxqa.answers.text import TEXT
from voxqa.answers.yes_no import YES_NO

ANSWER_TYPES: dict[str, AnswerType] = {
    t.name: t for t in (YES_NO, CHOICE, MULTI_CHOICE, NUMBER, FRAMES, BOXES, BOX3D, TEXT, GRADE)
}
