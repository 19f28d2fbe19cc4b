"""From a trained model to files an application can load: weights + metadata, and exported graphs.

Three artefacts, one job each:

- **weights** (``.safetensors``, or a ``weights_only`` ``.pt`` state dict) with a small metadata
  record: architecture name, classes, input size, normalisation, data source, metrics. The record
  is what lets ``python -m companion.predict`` rebuild the model and preprocess an image the way
  training did, without the training code's variables.
- a **torch.export** program (``.pt2``): the model's graph, runnable without its Python class.
- an **ONNX** file, runnable by onnxruntime (no PyTorch needed at inference time).

Every write is atomic (temporary file in the same folder, then rename), and every exported graph
is checked against the eager model on held-out data with :func:`check_equivalence`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from .train import write_atomic

WEIGHTS_FORMAT = "companion.weights/1"
#: Keys every metadata record must have (``metrics`` and ``model_kwargs`` may be empty dicts).
REQUIRED_KEYS = ("architecture", "classes", "input_size", "normalization", "data_source")


class ExportError(ValueError):
    """A model file could not be written, read or matched; the message names the file and a fix."""


# --------------------------------------------------------------------------------------------
# Architectures a weights file may name
# --------------------------------------------------------------------------------------------
def _architectures() -> dict[str, Callable[..., nn.Module]]:
    from . import models

    return {name: getattr(models, name) for name in dir(models)
            if isinstance(getattr(models, name), type) and issubclass(getattr(models, name), nn.Module)}


def build_model(architecture: str, **kwargs: Any) -> nn.Module:
    """Instantiate ``companion.models.<architecture>(**kwargs)``."""
    known = _architectures()
    if architecture not in known:
        raise ExportError(f"unknown architecture {architecture!r}; companion.models provides {sorted(known)}")
    return known[architecture](**kwargs)


# --------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------
def make_metadata(
    model: nn.Module,
    *,
    classes: Iterable[str],
    input_size: Iterable[int],
    mean: Iterable[float],
    std: Iterable[float],
    data_source: str,
    metrics: Mapping[str, float] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The record saved next to the weights; JSON-serialisable, checked for consistency."""
    classes, input_size = [str(c) for c in classes], [int(s) for s in input_size]
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    if len(input_size) != 3:
        raise ExportError(f"input_size must be (channels, height, width); got {input_size}")
    if not (len(mean) == len(std) == input_size[0]):
        raise ExportError(f"mean and std need one value per channel ({input_size[0]}); got {mean} and {std}")
    if any(s <= 0 for s in std):
        raise ExportError(f"std values must be positive; got {std}")
    meta = {
        "format": WEIGHTS_FORMAT,
        "architecture": type(model).__name__,
        "model_kwargs": dict(model_kwargs or {}),
        "classes": classes,
        "input_size": input_size,
        "normalization": {"mean": mean, "std": std},
        "data_source": str(data_source),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        **extra,
    }
    json.dumps(meta)  # fail now, not at save time, if something is not serialisable
    return meta


def _check_metadata(meta: Any, path: Path) -> dict[str, Any]:
    if not isinstance(meta, dict):
        raise ExportError(f"{path} has no companion metadata record; save it with companion.export.save_weights")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ExportError(f"{path} metadata lacks {missing}; save it with companion.export.save_weights")
    return meta


# --------------------------------------------------------------------------------------------
# Weights + metadata
# --------------------------------------------------------------------------------------------
def save_weights(model: nn.Module, metadata: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Save ``model.state_dict()`` and ``metadata`` atomically.

    ``.safetensors``: the metadata is stored as JSON in the safetensors header.
    ``.pt``: a plain dict ``{"format", "metadata", "state_dict"}`` readable with ``weights_only=True``.
    """
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = dict(metadata)
    if path.suffix == ".safetensors":
        from safetensors.torch import save

        return write_atomic(save(state, metadata={"companion": json.dumps(meta)}), path)
    if path.suffix == ".pt":
        obj = {"format": WEIGHTS_FORMAT, "metadata": json.dumps(meta), "state_dict": state}
        return write_atomic(lambda f: torch.save(obj, f), path)
    raise ExportError(f"cannot tell the weights format from {path.name!r}: use a .safetensors or .pt file name")


def load_weights(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a file written by :func:`save_weights`: ``(state_dict, metadata)``."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"no weights file at {path}; check the path or export the model first")
    if path.stat().st_size == 0:
        raise ExportError(f"the weights file {path} is empty (an interrupted copy?); export the model again")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                raw = (f.metadata() or {}).get("companion")
                state = {k: f.get_tensor(k) for k in f.keys()}
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(obj, dict) or obj.get("format") != WEIGHTS_FORMAT:
                raise ExportError(f"{path} is not a companion weights file (expected format {WEIGHTS_FORMAT!r}); "
                                  "save it with companion.export.save_weights")
            raw, state = obj.get("metadata"), obj["state_dict"]
        meta = json.loads(raw) if raw is not None else None
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"{path} could not be read as a weights file ({type(exc).__name__}: {exc}); "
                          "is it a .safetensors or .pt file written by companion.export.save_weights?") from None
    return state, _check_metadata(meta, path)


def load_model(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the architecture named in the metadata, load the weights, return it in eval mode."""
    state, meta = load_weights(path)
    model = build_model(meta["architecture"], **meta.get("model_kwargs", {}))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise ExportError(f"the weights in {path} do not fit architecture {meta['architecture']!r} "
                          f"(saved from a different model?): {detail}") from None
    return model.eval(), meta


def preprocess(images: Tensor, metadata: Mapping[str, Any]) -> Tensor:
    """Normalise float images in [0, 1] ``(N, C, H, W)`` with the metadata's mean and std."""
    mean = torch.tensor(metadata["normalization"]["mean"], dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(metadata["normalization"]["std"], dtype=images.dtype).view(1, -1, 1, 1)
    expected = tuple(metadata["input_size"])
    if tuple(images.shape[1:]) != expected:
        raise ExportError(f"images have shape {tuple(images.shape[1:])} per item; the model expects {expected}")
    return (images - mean) / std


# --------------------------------------------------------------------------------------------
# Exported graphs
# --------------------------------------------------------------------------------------------
def _batch_dim() -> Any:
    return torch.export.Dim("batch", min=1, max=65536)


def export_program(model: nn.Module, example: Tensor, path: str | os.PathLike | None = None):
    """``torch.export`` the model (eval mode, any batch size); save it atomically to ``path`` (.pt2)."""
    model = model.eval()
    program = torch.export.export(model, (example,), dynamic_shapes=({0: _batch_dim()},))
    if path is not None:
        write_atomic(lambda f: torch.export.save(program, f), path)
    return program


def load_program(path: str | os.PathLike) -> nn.Module:
    """Load a ``.pt2`` file written by :func:`export_program` as a callable module."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"no exported program at {path}; run export_program first")
    return torch.export.load(str(path)).module()


def export_onnx(model: nn.Module, example: Tensor, path: str | os.PathLike) -> Path:
    """Export to ONNX with a dynamic batch axis (input ``x``, output ``logits``), atomically."""
    model = model.eval()
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        tmp_file = Path(tmp) / path.name
        torch.onnx.export(model, (example,), str(tmp_file), dynamo=True, input_names=["x"],
                          output_names=["logits"], dynamic_shapes=({0: _batch_dim()},), external_data=False)
        return write_atomic(tmp_file.read_bytes(), path)


def onnx_runner(path: str | os.PathLike) -> Callable[[Tensor], Tensor]:
    """An onnxruntime CPU session wrapped as ``fn(x: Tensor) -> Tensor``."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"no ONNX file at {path}; run export_onnx first")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {name: x.detach().cpu().numpy()})[0])

    return run


@torch.no_grad()
def check_equivalence(
    reference: Callable[[Tensor], Tensor],
    candidate: Callable[[Tensor], Tensor],
    batches: Iterable[Tensor],
    *,
    atol: float = 1e-4,
) -> dict[str, float]:
    """Run both on every batch; raise :class:`ExportError` if any output differs by more than ``atol``.

    Returns the largest absolute difference, the share of rows whose top class agrees, and the
    number of rows compared.
    """
    worst, agree, n = 0.0, 0, 0
    for x in batches:
        a, b = reference(x), candidate(x)
        if a.shape != b.shape:
            raise ExportError(f"exported model returns shape {tuple(b.shape)}, eager model {tuple(a.shape)}")
        worst = max(worst, float((a - b).abs().max()))
        agree += int((a.argmax(1) == b.argmax(1)).sum())
        n += a.shape[0]
    if n == 0:
        raise ExportError("check_equivalence got no batches to compare")
    if worst > atol:
        raise ExportError(f"exported model differs from the eager one by {worst:.3g} > atol={atol:g}")
    return {"max_abs_diff": worst, "top1_agreement": agree / n, "n": n}
