# Source this file to emulate an instruction set other than this CPU's, so that a notebook stored
# on one machine is checked against the kernels another machine would run:
#   an AVX-512 host is made to run AVX2 kernels, and any other x86 host the default (SSE4) ones.
# Each variable moves a different library: ATen's own kernels (ATEN_CPU_CAPABILITY), oneDNN's
# convolutions (ONEDNN_MAX_CPU_ISA), MKL's BLAS (MKL_ENABLE_INSTRUCTIONS) and NumPy's SIMD loops
# (NPY_DISABLE_CPU_FEATURES). ARM machines have no such switch; there this prints a note only.
if [ "$(uname -m)" != "x86_64" ]; then
    echo "other_isa.sh: $(uname -m) has no instruction-set emulation here; running natively" >&2
elif grep -qw avx512f /proc/cpuinfo; then
    export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
    export NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR"
    echo "other_isa.sh: AVX-512 host, emulating AVX2" >&2
else
    export ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2
    export NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL AVX512_SPR"
    echo "other_isa.sh: AVX2 (or older) host, emulating SSE4" >&2
fi
