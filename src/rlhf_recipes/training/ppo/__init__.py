"""The project's PPO for language models: its config (TRL 1.12's field names) and its trainer."""

from .config import PPOConfig
from .trainer import PPOTrainer

__all__ = ["PPOConfig", "PPOTrainer"]
