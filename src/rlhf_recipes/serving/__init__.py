"""Talking to the stages: `make chat` in the terminal, `make serve` in the browser."""
