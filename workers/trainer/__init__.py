"""The trainer role: LoRA adapters trained on dataset snapshots."""

from workers.trainer.lora import LoraTrainingConfig, train_lora

__all__ = ["LoraTrainingConfig", "train_lora"]
