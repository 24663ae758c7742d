"""Segmentation: classical cell extraction (trained part segmentation is being built)."""
