"""Orchestration above every stage: the `make engine` chain (`mirnet build`), make demo, make gpu-check."""
