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
x, w = torch.randn(8, 16, 32, 32), torch.randn(16, 16, 5, 5)  # 16 channels: AVX2
# and AVX-512 kernels block them differently (3 channels give the same bits on both)
a, b = torch.randn(200, 300), torch.randn(300, 100)
print(json.dumps({
    "capability": torch.backends.cpu.get_cpu_capability(),
    "conv": torch.nn.functional.conv2d(x, w).numpy().tobytes().hex()[:4000],
    "matmul": (a @ b).numpy().tobytes().hex()[:4000],
}))
"""

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="emulation is x86-only")


def probe(emulate: bool, **env: str) -> dict:
    prefix = f"source {ROOT / 'scripts' / 'other_isa.sh'} && " if emulate else ""
    out = subprocess.run(["bash", "-c", f'{prefix}"{sys.executable}" -c "$PROBE"'],
                         env={"PROBE": PROBE, "PATH": "/usr/bin:/bin", **env},
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def runs() -> tuple[dict, dict]:
    return probe(False), probe(True)


def test_other_isa_changes_atens_kernels(runs):
    native, other = runs
    assert native["capability"] != other["capability"], (native["capability"], other["capability"])


def test_other_isa_changes_onednns_convolution(runs):
    native, other = runs
    assert native["conv"] != other["conv"], "oneDNN ran the same convolution kernel"


def test_other_isa_changes_the_blas(runs):
    native, other = runs
    if probe(False, MKL_ENABLE_INSTRUCTIONS="SSE4_2")["matmul"] == native["matmul"]:
        # MKL picks its own code path on non-Intel CPUs (this AMD host, for one) and ignores the
        # switch: even SSE4.2 gives the native bits, so no setting could move it here.
        pytest.skip("MKL ignores MKL_ENABLE_INSTRUCTIONS on this CPU (even SSE4_2 is native)")
    assert native["matmul"] != other["matmul"], "the BLAS ran the same matrix-product kernel"
