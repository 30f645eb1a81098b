"""The stage runner every training script uses, the online RL of PPO, RLOO and GRPO, the stage command, the sweep."""
