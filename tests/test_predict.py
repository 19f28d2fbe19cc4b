"""The predictor, driven through its real command line (``python -m companion.predict``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from torch import nn

from companion.data import mnist
from companion.export import load_model, make_metadata, save_weights
from companion.models import MnistCNN
from companion.predict import load_images, read_image, to_model_input, top_k

LINE = re.compile(r"^(?P<path>.+?): (?P<rest>.+)$")
PAIR = re.compile(r"(\S+) \((\d\.\d{3})\)")


def _meta(model: nn.Module) -> dict:
    return make_metadata(model, classes=[str(d) for d in range(10)], input_size=(1, 28, 28), mean=[0.1311],
                         std=[0.3083], data_source="test fixture", metrics={}, light_on_dark=True)


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "companion.predict", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def assert_clean_failure(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error:"), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    model = MnistCNN()
    out = {"weights": save_weights(model, _meta(model), root / "mnist_cnn.safetensors")}
    # real photographs: an RGB JPEG of any size and a grayscale PNG
    Image.fromarray(skdata.chelsea()).save(root / "chelsea.jpg", quality=90)
    Image.fromarray(skdata.camera()).save(root / "camera.png")
    # a real MNIST digit, written as dark ink on white paper, 5x larger
    digit = mnist("test").images[0, 0].numpy()
    Image.fromarray(255 - np.kron(digit, np.ones((5, 5), dtype=np.uint8))).save(root / "digit.png")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.png").write_text("this is a text file, not a picture\n")
    (root / "truncated.jpg").write_bytes((root / "chelsea.jpg").read_bytes()[:2000])
    # weights of a different architecture, labelled as MnistCNN
    other = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    out["other_weights"] = save_weights(other, {**_meta(model)}, root / "other.safetensors")
    (root / "empty.safetensors").write_bytes(b"")
    (root / "garbage.pt").write_bytes(b"not a checkpoint")
    out.update({p.stem + p.suffix.replace(".", "_"): p for p in root.iterdir()})
    out["root"] = root
    return out


# --------------------------------------------------------------------------------------------
# Happy path
# --------------------------------------------------------------------------------------------
def test_cli_prints_top_k_for_real_photographs(files):
    images = [files["chelsea_jpg"], files["camera_png"], files["digit_png"]]
    result = run_cli(*images, "--weights", files["weights"], "--top", "4")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    model, meta = load_model(files["weights"])
    expected = top_k(model, load_images(images, meta), meta["classes"], k=4)
    for line, path, want in zip(lines, images, expected):
        m = LINE.match(line)
        assert m and m["path"] == str(path), line
        pairs = [(c, float(p)) for c, p in PAIR.findall(m["rest"])]
        assert len(pairs) == 4
        probs = [p for _, p in pairs]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.002
        assert [c for c, _ in pairs] == [c for c, _ in want]
        assert probs == pytest.approx([p for _, p in want], abs=6e-4)


def test_preprocessing_recovers_the_training_digit(files):
    """Ink-on-paper, 140x140 PNG -> the 28x28 light-on-dark digit the model was trained on."""
    _, meta = load_model(files["weights"])
    x = to_model_input(read_image(files["digit_png"], 1), meta)
    original = mnist("test").images[0].float() / 255
    assert x.shape == (1, 28, 28)
    assert float((x - original).abs().mean()) < 0.05
    # without the inversion the picture would be mostly white: the check above would fail
    assert float(x.mean()) < 0.3


def test_color_and_gray_inputs_become_one_channel(files):
    _, meta = load_model(files["weights"])
    batch = load_images([files["chelsea_jpg"], files["camera_png"]], meta)
    assert batch.shape == (2, 1, 28, 28) and torch.isfinite(batch).all()


# --------------------------------------------------------------------------------------------
# Bad input: a clear message on stderr, a non-zero exit code, never a traceback
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, fragment", [
    ("missing.png", "no such file"),
    ("empty_png", "empty"),
    ("notes_png", "not an image"),
    ("truncated_jpg", "damaged or truncated"),
])
def test_bad_image_files(files, name, fragment):
    path = files.get(name, files["root"] / name)
    result = run_cli(path, "--weights", files["weights"])
    assert_clean_failure(result, str(path), fragment)
    assert result.stdout == ""


def test_a_bad_image_does_not_stop_the_good_ones(files):
    result = run_cli(files["root"] / "missing.png", files["digit_png"], "--weights", files["weights"])
    assert_clean_failure(result, "no such file")
    assert result.stdout.startswith(f"{files['digit_png']}: ")


@pytest.mark.parametrize("weights, fragment", [
    ("other_weights", "different model"),
    ("missing.safetensors", "no weights file"),
    ("empty_safetensors", "empty"),
    ("garbage_pt", "could not be read"),
])
def test_bad_weights_files(files, weights, fragment):
    path = files.get(weights, files["root"] / weights)
    result = run_cli(files["digit_png"], "--weights", path)
    assert_clean_failure(result, str(path), fragment)


def test_usage_errors_exit_with_code_2(files):
    result = run_cli(files["digit_png"])  # no --weights
    assert result.returncode == 2 and "--weights" in result.stderr and "Traceback" not in result.stderr
