"""Latency benchmark (`mirnet-bench`), parity checks against PyTorch, reports and plots."""
