"""Explanations: Grad-CAM heat maps, concept bottleneck with interventions, counterfactual
retrieval and bias discovery (the last three work on WBCAtt-style attributes)."""
