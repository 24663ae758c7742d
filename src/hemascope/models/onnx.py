"""Classifiers as ONNX graphs for fast CPU inference.

:func:`export_classifier` writes a classifier folder's network as ``model.onnx`` (float32,
or int8 by static post-training quantisation: per-channel weights, activations calibrated
on images the caller gives), beside a copy of its config marked ``"runtime": "onnx"``.
``load_classifier`` then returns an :class:`OnnxClassifier`, a module that runs the graph
with ONNX Runtime, so classification, evaluation and ``analyze`` use it unchanged. An ONNX
file is a protobuf: loading it runs no code. Embeddings, Grad-CAM and fine-tuning need the
safetensors model it came from.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from hemascope.io.atomic import write_json
from hemascope.models.artifact import CONFIG, ONNX_WEIGHTS, SPLIT, ModelError, load_classifier

OPSET = 17


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise ModelError("ONNX models need onnxruntime: pip install 'hemascope[onnx]'") from None
    return onnxruntime


class OnnxClassifier(torch.nn.Module):
    """Class scores from an exported graph: ``forward(x)`` takes the same normalised
    ``(B, 3, H, W)`` batch as the PyTorch classifier and returns logits on the CPU."""

    def __init__(self, path: str | Path, threads: int = 0):
        super().__init__()
        ort = _ort()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        # idle workers must not spin: PyTorch (detector, attributes) shares these cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelError(f"cannot load {path}: {e}") from None
        self.input = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().float().cpu().contiguous(memory_format=torch.contiguous_format).numpy()
        return torch.from_numpy(self.session.run(None, {self.input: arr})[0])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        raise ModelError("an ONNX classifier gives class scores only: embeddings, Grad-CAM and "
                         "fine-tuning need the safetensors model it was exported from")


class _Calibration:
    """ONNX Runtime's calibration reader over preprocessed batches."""

    def __init__(self, batches: list[np.ndarray], name: str):
        self._it = iter([{name: b} for b in batches])

    def get_next(self):
        return next(self._it, None)


def export_classifier(spec: str | Path, out_dir: str | Path, *,
                      calibration: Sequence[np.ndarray] | None = None,
                      batch_size: int = 32) -> Path:
    """Write the classifier ``spec`` (folder or ``"default"``) to ``out_dir`` as ONNX.

    Args:
        calibration: RGB uint8 cell images; given, the graph is quantised to int8 with
            activation ranges measured on them (a few hundred training images; never the
            test split). ``None``: float32.

    Raises:
        ModelError: ``out_dir`` is the source folder or already holds a model, the source is
            itself an ONNX model, an empty calibration set, or onnxruntime is missing.
    """
    from hemascope.classify import preprocess

    loaded = load_classifier(spec)
    if loaded.config.get("runtime") == "onnx":
        raise ModelError(f"{loaded.path} is already an ONNX model: export its source instead")
    out = Path(out_dir)
    if out.resolve() == loaded.path.resolve():
        raise ModelError("the export must go to another folder than its source")
    if (out / CONFIG).exists():
        raise ModelError(f"{out} already holds a model; choose an empty folder")
    if calibration is not None and len(calibration) == 0:
        raise ModelError("int8 export needs calibration images (none given)")
    _ort()
    size = int(loaded.config["image_size"])
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        f32 = Path(tmp) / "f32.onnx"
        example = torch.zeros(2, 3, size, size)
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation notices
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(loaded.model.float().eval(), example, str(f32), input_names=["x"],
                              output_names=["logits"], opset_version=OPSET, dynamo=False,
                              dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}})
        final = f32
        if calibration is not None:
            from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

            batches = [preprocess(calibration[i:i + batch_size], loaded.config)
                       .contiguous().numpy() for i in range(0, len(calibration), batch_size)]
            final = Path(tmp) / "int8.onnx"
            logging.disable(logging.WARNING)  # the quantiser's advice goes to the root logger
            try:
                quantize_static(str(f32), str(final), _Calibration(batches, "x"),
                                quant_format=QuantFormat.QDQ, per_channel=True,
                                weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
            finally:
                logging.disable(logging.NOTSET)
        shutil.move(str(final), str(out / ONNX_WEIGHTS))
    cfg = dict(loaded.config)
    cfg.pop("views", None)  # an export is for speed: one view unless --tta asks for more
    cfg["runtime"] = "onnx"  # the hash names the graph actually run (run manifests record it)
    cfg["weights_sha256"] = hashlib.sha256((out / ONNX_WEIGHTS).read_bytes()).hexdigest()
    cfg["onnx"] = {"opset": OPSET, "source": str(loaded.path),
                   "source_weights_sha256": loaded.config.get("weights_sha256"),
                   "quantization": ("int8 static, per-channel weights, QDQ" if calibration is not None
                                    else None),
                   "calibration_images": len(calibration) if calibration is not None else 0}
    if (loaded.path / SPLIT).is_file():
        shutil.copy2(loaded.path / SPLIT, out / SPLIT)
    write_json(out / CONFIG, cfg)
    return out
