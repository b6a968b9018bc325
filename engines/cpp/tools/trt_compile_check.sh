#!/usr/bin/env bash
# Compile the TensorRT engine of libmirnet (and link libmirnet + mirnet_run) against the real public
# headers of several TensorRT releases, on a machine without TensorRT: headers exported from the
# NVIDIA/TensorRT repository (never committed: build/ is ignored), a stub libnvinfer.so built from
# tools/trt_stub.c, and the CUDA runtime of the local CUDA toolkit. Proves the code compiles and links
# per release with -Wall -Wextra (warnings are listed); proves nothing about running on a GPU.
#
#   engines/cpp/tools/trt_compile_check.sh [--mirror DIR] [--only VERSION]
#
# Without --only: exports each release's include/ into build/trt-headers/<version>/ (then
# `cmake` registers a trt.compile.<version> CTest case per exported set) and checks them all.
set -euo pipefail
cd "$(dirname "$0")/../../.."
MIRROR=/work/.mirror/NVIDIA+TensorRT/repo
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --mirror) MIRROR="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    *) echo "usage: $0 [--mirror DIR] [--only VERSION]" >&2; exit 2 ;;
  esac
done
VERSIONS=("10.3" "10.16" "11.1")
[ -n "$ONLY" ] && VERSIONS=("$ONLY")
CUDA_ROOT=${CUDAToolkit_ROOT:-/usr/local/cuda}
status=0
for version in "${VERSIONS[@]}"; do
  root="build/trt-headers/$version"
  if [ ! -f "$root/include/NvInfer.h" ]; then
    if ! git -C "$MIRROR" rev-parse --verify -q "release/$version" >/dev/null; then
      echo "trt-compile-check $version: no headers in $root and no branch release/$version in $MIRROR" >&2
      status=1; continue
    fi
    mkdir -p "$root"
    git -C "$MIRROR" archive "release/$version" include | tar -x -C "$root"
  fi
  mkdir -p "$root/lib"
  cc -shared -fPIC -o "$root/lib/libnvinfer.so" engines/cpp/tools/trt_stub.c
  build="build/trt-check/$version"
  log="$build.log"
  mkdir -p "$(dirname "$log")"
  if cmake -S engines/cpp -B "$build" -DTENSORRT_ROOT="$PWD/$root" -DCUDAToolkit_ROOT="$CUDA_ROOT" \
       -DMIRNET_REQUIRE_TRT=ON -DMIRNET_BUILD_OPENVINO=OFF -DMIRNET_BUILD_TESTS=OFF >"$log" 2>&1 &&
     cmake --build "$build" -j2 --target mirnet_run >>"$log" 2>&1; then
    headers=$(grep -o "TensorRT engine ON (TensorRT [0-9.]*" "$log" | sed 's/.*(//')
    warnings=$(grep -c "tensorrt_engine.cpp.*warning:" "$log" || true)
    echo "trt-compile-check $version: OK -- $headers headers, compiled and linked (stub libnvinfer, CUDA $(grep -o 'CUDA [0-9.]*)' "$log" | head -1 | tr -d ')' | cut -d' ' -f2)), $warnings warning(s) in tensorrt_engine.cpp"
    grep "tensorrt_engine.cpp.*warning:" "$log" | sort -u | sed 's/^/  /' || true
  else
    echo "trt-compile-check $version: FAILED (log: $log)"; grep -E "error|Error" "$log" | head -20 | sed 's/^/  /'
    status=1
  fi
done
exit $status
