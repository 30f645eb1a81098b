"""make bench: the recipes against plain PyTorch loops and TRL defaults."""
