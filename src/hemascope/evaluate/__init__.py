"""Evaluation: metrics as pure functions and the protocols that use them."""
