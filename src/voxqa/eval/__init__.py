"""Evaluation: prompts, model adapters, parsing, metrics, runs."""
