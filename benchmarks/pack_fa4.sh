#!/usr/bin/env bash
# Packs flash-attn-4 and what it needs (the CuTe DSL, quack, tvm-ffi) into one archive, for a GPU machine that
# cannot reach a package index, to run `local_throughput.py --fa4` there. The wheels are CPython 3.12, x86-64
# Linux, CUDA 13 (PY_VERSION=3.11 etc. for another Python). The CuTe DSL's compiler library is most of the
# 264 MB; xz -9e with a 256 MiB window packs it all into about 56 MiB (about 7 minutes on two cores).
#
#   bash benchmarks/pack_fa4.sh [DIR]         # here, with pip's index: writes DIR/site.tar.xz (DIR: .fa4)
#   # there, from the repository root (the baseline, ours, the FA4 check and ours with FA4: about 5-6 minutes):
#   tar xJf .fa4/site.tar.xz -C /tmp
#   export PYTHONPATH=/tmp/site:/tmp/site/nvidia_cutlass_dsl/dsl_packages:$PWD   # the .pth file's addition
#   timeout 540 python3 benchmarks/local_throughput.py --tokens-per-step 16384 --fa4 --json "$OUT/fa4.json"
#
# Also needs CPython 3.12, a CUDA 13 driver, torch >= 2.10 (its FA4 hook), triton (quack imports it), einops,
# protobuf and cuda-bindings >= 12.8 there.
set -euo pipefail
dest="${1:-.fa4}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 -m pip download -q --no-deps --only-binary=:all: --implementation cp --python-version "${PY_VERSION:-3.12}" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$work/wheels" \
    flash-attn-4==4.0.0b36 quack-kernels==0.6.5 apache-tvm-ffi==0.1.15.post2 torch-c-dlpack-ext==0.1.5 \
    nvidia-cutlass-dsl==4.8.1 nvidia-cutlass-dsl-libs-base==4.8.1 nvidia-cutlass-dsl-libs-core==4.8.1 \
    nvidia-cutlass-dsl-libs-cu13==4.8.1
mkdir -p "$work/site" "$dest"
for wheel in "$work"/wheels/*.whl; do
    python3 -m zipfile -e "$wheel" "$work/site"  # a wheel is a zip: extracted as pip --target would lay it out
done
# (tvm_ffi loads its libtvm_ffi_testing.so at import: it stays)
tar -C "$work" -cf - site | xz -T1 --lzma2=preset=9e,dict=256MiB >"$dest/site.tar.xz"
ls -l "$dest/site.tar.xz"
