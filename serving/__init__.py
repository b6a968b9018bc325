"""Serving above the engines: Triton Inference Server model repositories from the chain's artifacts."""
