"""Explanations: Grad-CAM heat maps (more to come: attributes, concepts, counterfactuals)."""
