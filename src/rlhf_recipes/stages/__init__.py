"""The stage runner every training script uses, and the online RL that RLOO and GRPO share."""
