"""Smear-field detection: ensembles of detectors (detectors themselves are being built)."""
