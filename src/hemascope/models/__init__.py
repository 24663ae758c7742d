"""Models: the encoder registry, the cell classifier and model artifacts (folders)."""

from hemascope.models.registry import create_encoder, encoder_spec, list_encoders, register_encoder

__all__ = ["create_encoder", "encoder_spec", "list_encoders", "register_encoder"]
