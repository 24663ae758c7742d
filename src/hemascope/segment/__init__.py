"""Segmentation: classical cell extraction and the trained cell-part U-Net."""
