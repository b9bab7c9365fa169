"""``accelerate`` config files for multi-GPU runs, written next to every training run.

``voxqa train`` itself is launcher-agnostic (the Trainer reads the process group that
``accelerate launch`` or ``torchrun`` sets up), so a GPU user runs, as is::

    accelerate launch --config_file OUT/accelerate/zero3.yaml -m voxqa train DATA --model M --out OUT ...

Three files are written: ``ddp.yaml`` (plain data parallel), ``zero3.yaml`` (DeepSpeed
ZeRO-3, what SGMRI-VQA ran) and ``fsdp.yaml`` (PyTorch FSDP, full sharding, full state
dict on save so ``save_pretrained`` writes loadable weights). Each uses every local GPU and
the recipe's precision; the gradient accumulation is left to ``voxqa train`` (one place).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from voxqa.fileio import write_text
from voxqa.train.recipes import Recipe

FILES = ("ddp.yaml", "zero3.yaml", "fsdp.yaml")


def accelerate_configs(recipe: Recipe, num_processes: int = 8) -> dict[str, dict[str, Any]]:
    """The three configs as dicts, keyed by file name."""
    base: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "num_machines": 1,
        "machine_rank": 0,
        "num_processes": num_processes,
        "mixed_precision": "bf16" if recipe.bf16 else "no",
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": False,
    }
    return {
        "ddp.yaml": {**base, "distributed_type": "MULTI_GPU"},
        "zero3.yaml": {**base, "distributed_type": "DEEPSPEED", "deepspeed_config": {
            "zero_stage": 3,
            "zero3_init_flag": True,
            "zero3_save_16bit_model": True,  # save_pretrained gathers full weights
            "offload_optimizer_device": "none",
            "offload_param_device": "none",
        }},
        "fsdp.yaml": {**base, "distributed_type": "FSDP", "fsdp_config": {
            "fsdp_version": 1,
            "fsdp_sharding_strategy": "FULL_SHARD",
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_backward_prefetch": "BACKWARD_PRE",
            "fsdp_state_dict_type": "FULL_STATE_DICT",
            "fsdp_use_orig_params": True,  # frozen vision tower beside trained layers
            "fsdp_sync_module_states": True,
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_offload_params": False,
        }},
    }


def write_accelerate_configs(recipe: Recipe, folder: Path, num_processes: int = 8) -> list[Path]:
    """Write the configs under ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, cfg in accelerate_configs(recipe, num_processes).items():
        path = folder / name
        write_text(path, yaml.safe_dump(cfg, sort_keys=False))
        paths.append(path)
    return paths
