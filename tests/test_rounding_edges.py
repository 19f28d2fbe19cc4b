"""Settings the chapters print results from do not sit on a rounding edge of the CPU.

A compared notebook output must print the same on every instruction set. Where a library computes
in float32 and then truncates to whole pixels, a last-bit difference between two CPUs' math
kernels can move the answer. Chapter 15's face detector was such a case: with ``min_size=60``,
scikit-image's cascade scales its 24-pixel window by ``np.power(1.2, log_1.2(2.5))``, which is
2.5 on an AVX2 machine and 2.4999998 with NumPy's AVX-512 path, and the window (and every
feature inside it) moved by a pixel. These tests perturb that power by a few units in the last
place and require the chapter's setting to give the same detection either way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

cascade_module = pytest.importorskip("skimage.feature._cascade")
from skimage import data as skdata  # noqa: E402
from skimage.feature import Cascade  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "book" / "15_metrics.ipynb"
#: The chapter's call, as it stands in its face-detection cell.
SETTING = dict(scale_factor=1.2, step_ratio=1, min_size=(61, 61), max_size=(160, 160))
#: Relative changes of the window scales: 1 float32 ulp (2**-23) up to 1e-4.
PERTURBATIONS = (2.0**-23, 2.0**-21, 2.0**-19, 1e-4)


class _ScaledPower:
    """Stands in for the ``np`` module the cascade uses, with ``np.power`` scaled by ``factor``."""

    def __init__(self, factor: float) -> None:
        self.factor = np.float32(factor)

    def power(self, *args, **kwargs):
        return (np.power(*args, **kwargs) * self.factor).astype(np.float32)

    def __getattr__(self, name: str):
        return getattr(np, name)


def detect(setting: dict, factor: float = 1.0) -> list[tuple[int, int, int, int]]:
    detector = Cascade(skdata.lbp_frontal_face_cascade_filename())
    original = cascade_module.np
    cascade_module.np = _ScaledPower(factor)
    try:
        found = detector.detect_multi_scale(img=skdata.astronaut(), **setting)
    finally:
        cascade_module.np = original
    return sorted((d["c"], d["r"], d["width"], d["height"]) for d in found)


def moved_by(setting: dict) -> list[float]:
    """The perturbations (signed) under which the detections differ from the unperturbed ones."""
    base = detect(setting)
    return [s * e for e in PERTURBATIONS for s in (-1, 1) if detect(setting, 1 + s * e) != base]


def test_the_chapter_uses_the_setting_tested_here():
    cells = json.loads(CHAPTER.read_text())["cells"]
    source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "min_size=(61, 61), max_size=(160, 160)" in source and "scale_factor=1.2" in source


def test_the_old_setting_sits_on_a_rounding_edge():
    # The test below can fail: this is the setting that printed a different box on AVX-512.
    old = dict(SETTING, min_size=(60, 60), max_size=(250, 250))
    assert moved_by(old), "min_size=60 no longer sits on an edge; the chapter's note is stale"


def test_the_chapter_setting_is_robust_to_last_bit_differences():
    assert len(detect(SETTING)) == 1
    assert moved_by(SETTING) == []
