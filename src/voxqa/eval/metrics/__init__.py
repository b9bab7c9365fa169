"""Metrics, one module per concern; all pure functions.

* ``items``: ``score_item``, one prediction against its gold answer (each answer type's
  ``score`` in ``voxqa.answers``);
* ``boxes``: IoU matching within frames, 3D IoU, COCO-style AP;
* ``text``: BLEU, ROUGE-L, token and entity F1, the AR-score;
* ``statistics``: set precision/recall/F1, Wilson intervals, the below-chance test, Holm;
* ``aggregate``: per-group means with CIs over a run's per-item scores;
* ``grounding``: G-IoU of grounded captions.

All scores lie in [0, 1] (BLEU is sacrebleu's 0-100 divided by 100) except ``abs_error``.
"""
