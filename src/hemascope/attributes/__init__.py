"""Morphology attributes of white cells (WBCAtt, Tsutsui et al. 2023): the model, its
loading and prediction. Training lives in :mod:`hemascope.train.attributes`, scoring in
:mod:`hemascope.evaluate.attributes`."""

from hemascope.attributes.model import AttributeModel, attribute_loss
from hemascope.attributes.predict import (AttributePrediction, attribute_probabilities,
                                          load_attribute_model, predict_attributes)

__all__ = ["AttributeModel", "AttributePrediction", "attribute_loss", "attribute_probabilities",
           "load_attribute_model", "predict_attributes"]
