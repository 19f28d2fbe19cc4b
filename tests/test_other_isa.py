"""`make nbval-isa` really runs other kernels: scripts/other_isa.sh changes what the CPU computes.

If the variables it sets stopped working (a renamed setting, a library that ignores it), the guard
would silently compare the notebooks against the same kernels twice. These tests run one small
computation natively and under the script and require a different instruction set and different
float32 bits from the convolution and matrix-product kernels.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json, torch
torch.manual_seed(0)
x, w = torch.randn(8, 3, 32, 32), torch.randn(16, 3, 5, 5)
a, b = torch.randn(200, 300), torch.randn(300, 100)
print(json.dumps({
    "capability": torch.backends.cpu.get_cpu_capability(),
    "conv": torch.nn.functional.conv2d(x, w).numpy().tobytes().hex()[:4000],
    "matmul": (a @ b).numpy().tobytes().hex()[:4000],
}))
"""

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="emulation is x86-only")


def probe(emulate: bool) -> dict:
    prefix = f"source {ROOT / 'scripts' / 'other_isa.sh'} && " if emulate else ""
    out = subprocess.run(["bash", "-c", f'{prefix}"{sys.executable}" -c "$PROBE"'],
                         env={"PROBE": PROBE, "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def test_other_isa_changes_the_kernels():
    native, other = probe(False), probe(True)
    assert native["capability"] != other["capability"], (native["capability"], other["capability"])
    assert native["conv"] != other["conv"], "oneDNN ran the same convolution kernel"
    assert native["matmul"] != other["matmul"], "the BLAS ran the same matrix-product kernel"
