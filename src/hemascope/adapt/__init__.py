"""Adapting models to a new lab: few-shot fine-tuning and its ablation."""
