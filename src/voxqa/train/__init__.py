"""Box-supervised fine-tuning (`voxqa train`, the `train` extra: trl, peft, accelerate).

Modules: ``data`` (examples as evaluation shows them, checks before training), ``recipes``
(the seeds' published settings as named presets), ``trainer`` (TRL ``SFTTrainer`` wiring,
log, checkpoints, outputs) and ``launch`` (accelerate configs for GPUs). See docs/training.md.
"""

from voxqa.train.data import TrainDataError
from voxqa.train.recipes import RECIPES, Recipe, get_recipe
from voxqa.train.trainer import TrainConfig, read_log, train

__all__ = ["RECIPES", "Recipe", "TrainConfig", "TrainDataError", "get_recipe", "read_log", "train"]
