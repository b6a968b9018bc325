# mirnet-deploy: the user-facing verbs. Every target runs inside .venv, which
# `make setup` creates (and every other target creates on demand).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYS ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of PyTorch: on our machines pip takes the 2.13.0 CPU wheel from
# the local wheel folder. Elsewhere, pass TORCH_PIP_ARGS="--index-url
# https://download.pytorch.org/whl/cpu" for a CPU build, or TORCH_SPEC for another one.
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
STAMP := $(VENV)/.installed
# PyTorch's bytecode is compiled on every core after pip installs it (pip compiles its 2,285 modules
# on one: 31.5 CPU-s for the install, 9.6 without compiling + 16.5 for compileall on two cores, about
# 13 s less wall). A few test modules written for newer Pythons do not compile; pip skips them the same
# way, hence `|| :`. The venv's own pip (Python 3.11's: 22.3 or later) installs everything: no upgrade.
TORCH_FOLDER := import importlib.util; print(importlib.util.find_spec('torch').submodule_search_locations[0])
# The project's own dependencies are installed by uv where uv itself installs (less CPU time than pip,
# the same packages and versions: README, Quickstart), else by pip; UV=0 uses pip only. uv reads no pip configuration,
# so PyTorch (pip's local wheel folder here, or TORCH_PIP_ARGS) is installed by pip first, and uv
# then keeps that build. uv compiles the bytecode as pip does, so the first run does not pay for it.
UV ?= 1
PIP_INSTALL := $(PY) -m pip install --quiet
UV_INSTALL := $(VENV)/bin/uv pip install --quiet --python $(PY) --compile-bytecode

TASK ?= denoise
PREC ?= fp16
BACKEND ?= auto
RES ?= 720p
# The model family (mirnet, mprnet, mirnetv2) of `make engine` / `make gpu-check`; empty: the one with
# demo weights for TASK (MIRNet first).
MODEL ?=
ARCH_OPTION = $(if $(MODEL),--arch $(MODEL))
# INT8 of `make engine`: a calibration set (.npz from `mirnet calibrate`; empty: the task's built-in set)
# and the PSNR budget in dB (empty: `mirnet build`'s default).
CALIB ?=
BUDGET ?=

.PHONY: help setup cpp-deps test cpp-test test-slow check demo demo-weights engine gpu-check bench bench-pytest clean

help:  ## list the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# `mirnet serve` runs in its own venv, .venv-serve, made from Debian's Python (3.11.2), because
#  - PyTriton's Triton Python-backend stub links the system's libpython3.11.so.1.0 and runs the venv's
#    standard library on it: a venv of another 3.11 build (pyenv's 3.11.7) fails inside the stub
#    ('_thread.RLock' object has no attribute '_recursion_count'); `mirnet serve` checks this first;
#  - nvidia-pytriton 0.7 requires numpy < 2, which .venv (numpy 2) must not be downgraded to.
# The client side (`mirnet infer --server`, `mirnet-bench --server`) runs in .venv with tritonclient.
PYTHON_SERVE ?= /usr/bin/python3.11
SERVE_VENV := .venv-serve
SERVE_STAMP := $(SERVE_VENV)/.installed

setup: $(STAMP) cpp-deps $(if $(filter 1,$(SERVE)),$(SERVE_STAMP))  ## create .venv (CPU PyTorch; GPU=1: CUDA PyTorch, TensorRT, cuda-bindings matched to the driver; Jetson: JetPack's; SERVE=1: also .venv-serve for `mirnet serve`) and the C++ build's Debian packages

# The Debian packages engines/cpp builds with: installed when make runs as root, otherwise make
# stops with the exact command. (OpenVINO's C++ side comes with the `openvino` wheel in .venv.)
CPP_DEBS := cmake g++ libpng-dev nlohmann-json3-dev libgtest-dev
cpp-deps:  ## the Debian packages of the C++ build (apt-get install when root)
	@command -v dpkg-query >/dev/null || { echo "cpp-deps: not a Debian system; install CMake, a C++17 compiler, libpng, nlohmann/json and GoogleTest yourself"; exit 0; }; \
	missing=$$(for p in $(CPP_DEBS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done | xargs); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "cpp-deps: installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else \
		echo "cpp-deps: engines/cpp needs Debian packages that are missing. Run:" >&2; \
		echo "  sudo apt-get install -y $$missing" >&2; \
		exit 1; \
	fi

# GPU=1 reads the NVIDIA driver's CUDA version (engines/nvidia.py, standard library only) and stops
# at once without a driver; on Jetson the venv uses JetPack's TensorRT and PyTorch (system site packages).
ifeq ($(GPU),1)
.PHONY: $(STAMP)
$(STAMP):
	$(PYTHON_SYS) -m engines.nvidia --venv $(VENV) --python $(PYTHON_SYS) --torch "$(TORCH_SPEC)"
	$(PY) -c "import torch; print('torch', torch.__version__, '| CUDA build:', torch.version.cuda is not None)"
	touch $(STAMP)
else
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PIP_INSTALL) --no-compile $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PY) -m compileall -qq -j 0 "$$($(PY) -c "$(TORCH_FOLDER)")" || :
	if [ "$(UV)" = 1 ] && $(PIP_INSTALL) uv && $(UV_INSTALL) -e '.[dev,serving]'; then :; else \
		[ "$(UV)" != 1 ] || echo "setup: uv did not install the project; pip does"; \
		$(PIP_INSTALL) -e '.[dev,serving]'; fi
	$(PY) -c "import torch; print('torch', torch.__version__, '| CUDA build:', torch.version.cuda is not None)"
	touch $(STAMP)
endif

$(SERVE_STAMP): pyproject.toml
	test -x $(SERVE_VENV)/bin/python || $(PYTHON_SERVE) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SERVE_VENV)/bin/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(SERVE_VENV)/bin/python -m pip install --quiet -e '.[serve]'
	$(SERVE_VENV)/bin/python -m serving.interpreter
	touch $(SERVE_STAMP)

# The default suite runs on TEST_WORKERS processes (pytest-xdist), whole files to a worker so each
# module's fixtures are made once: one pytest process kept about one of the two cores busy.
TEST_WORKERS ?= 2
test: $(STAMP) cpp-test  ## ruff, the C++ core's unit tests, then the default Python suite
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile

cpp-test: $(STAMP) cpp-deps  ## build engines/cpp (libmirnet with OpenVINO, and TensorRT where found; mirnet_run) and run ctest
	cmake -S engines/cpp -B build/cpp -DCMAKE_BUILD_TYPE=Release -DMIRNET_PYTHON=$(abspath $(PY))
	cmake --build build/cpp -j2
	ctest --test-dir build/cpp --output-on-failure -j2

test-slow: $(STAMP)  ## the tests marked slow (minutes on 2 cores)
	$(VENV)/bin/pytest -m slow

check: $(STAMP)  ## ruff lint and format check
	$(VENV)/bin/ruff check .

DEMO_OUT := demo-output
# The demo's latency table: p50 of the 3 runs after the first one (which mirnet-bench times apart, as
# first_ms: it is the warm-up; was: one more untimed run, about 6 s over the 8 configurations). The
# Performance tables use mirnet-bench's defaults (2 warm-ups, 10 runs, 2 s); this one shows the
# engines' order, not their last percent.
DEMO_BENCH := --warmup 0 --min-iters 3 --min-seconds 0

# The demo's INT8 calibration set: 8 crops of 384x384, the first 8 of `mirnet build`'s default set of 32
# (samples do not change with the count; the PSNR-budget search evaluates these same 8 either way), so
# only the ranges come from fewer crops: the held-out drop stays within the INT8 table's numbers, and
# the range collection costs a quarter (README, "How long `make demo` takes"). Made once: order-only on
# the venv, since a rebuilt set (new zip timestamps, new sha256) would make INT8 search again.
DEMO_CALIB := artifacts/calibration/denoise-demo-8x384.npz

$(DEMO_CALIB): | $(STAMP)
	$(VENV)/bin/mirnet calibrate --task denoise --count 8 --crop 384 --output $@

# One `mirnet build` process makes the three precisions (one PyTorch reference for their parity checks).
# The latency rows are the engines the build made and checked (engines.txt, one per precision, INT8 in
# the runtime and Q/DQ form `auto` chose), beside PyTorch FP32 on the same weights as the reference.
demo: $(STAMP) $(DEMO_CALIB)  ## the denoise demo end to end: FP32/FP16/INT8 engines with parity, latency at 256/512, a restored photo in demo-output/
	@mkdir -p $(DEMO_OUT)
	$(VENV)/bin/mirnet info full --res 256,1080p
	$(VENV)/bin/mirnet eval --task denoise
	$(VENV)/bin/mirnet build --task denoise --precision fp32,fp16,int8 --calib $(DEMO_CALIB)
	$(PY) -m pipeline.demo engines --task denoise --calib $(DEMO_CALIB) --output-dir $(DEMO_OUT)
	$(VENV)/bin/mirnet-bench --engine-list $(DEMO_OUT)/engines.txt \
		--model mirnet_ref/weights/denoise.pth --backend torch --res 256,512 \
		$(DEMO_BENCH) --json $(DEMO_OUT)/latency.json --md $(DEMO_OUT)/latency.md \
		--csv $(DEMO_OUT)/latency.csv --plot $(DEMO_OUT)/latency.png
	$(PY) -m pipeline.demo summary --task denoise --bench $(DEMO_OUT)/latency.json --output-dir $(DEMO_OUT)

# Demo weights: the `small` preset trained on the built-in training photographs.
# Deviations from the authors' recipe, for 2 CPU cores: 64x64 patches, batch 8,
# peak lr 1e-3 (a short schedule), a few thousand iterations. Mixup is off for
# denoise: blending two noisy inputs lowers their noise level below the fixed
# sigma the demo is trained for.
DEMO_TRAIN := --preset small --patch-size 64 --batch-size 8 --lr 1e-3 --warmup 100 --val-every 250 --seed 0
DEMO_ITERS_denoise := 2500 --no-mixup
DEMO_ITERS_enhance := 1500
DEMO_ITERS_sr := 1500

demo-weights: $(STAMP)  ## train the demo models: MIRNet x3, MPRNet deblur, MIRNet-v2 enhance (about 20-30 minutes each on 2 cores)
	for task in denoise enhance sr; do $(MAKE) --no-print-directory demo-weights-$$task || exit 1; done
	for model in $(DEMO_FAMILY_MODELS); do $(MAKE) --no-print-directory demo-weights-$$model || exit 1; done

# The other families' demo models, <family>_<task>: each family's `small` preset, batch 4 (the
# cores were shared when these were made), mixup off for deblur (blending two blurs is no blur;
# MPRNet's authors use mixup for denoising only). MPRNet deblur trains on one thread: on shared
# cores two threads spent ~8x the CPU time per iteration spin-waiting (README, demo models).
DEMO_FAMILY_MODELS := mprnet_deblur mirnetv2_enhance
DEMO_FAMILY_TRAIN := --preset small --patch-size 64 --batch-size 4 --seed 0
DEMO_ARGS_mprnet_deblur := --iterations 3000 --lr 2e-3 --warmup 50 --val-every 250 --no-mixup --threads 1
DEMO_ARGS_mirnetv2_enhance := --iterations 600 --lr 1e-3 --warmup 30 --val-every 50

$(addprefix demo-weights-,$(DEMO_FAMILY_MODELS)): demo-weights-%: $(STAMP)
	$(VENV)/bin/mirnet train --model $(word 1,$(subst _, ,$*)) --task $(word 2,$(subst _, ,$*)) \
		$(DEMO_FAMILY_TRAIN) $(DEMO_ARGS_$*) --output build/train/$* --publish mirnet_ref/weights/$*.pth

demo-weights-%: $(STAMP)
	$(VENV)/bin/mirnet train --task $* $(DEMO_TRAIN) --iterations $(DEMO_ITERS_$*) \
		--output build/train/$* --publish mirnet_ref/weights/$*.pth

engine: $(STAMP)  ## the whole chain from the task's weights: make engine TASK=denoise PREC=fp32|fp16|int8 [MODEL=mprnet BACKEND=auto|tensorrt|ort RES=720p,1080p CALIB=set.npz BUDGET=0.1]
	$(VENV)/bin/mirnet build --task $(TASK) $(ARCH_OPTION) --precision $(PREC) --backend $(BACKEND) --res $(RES) \
		$(if $(CALIB),--calib $(CALIB)) $(if $(BUDGET),--budget-db $(BUDGET))

gpu-check: $(STAMP)  ## prints its plan; on a GPU: PyTorch CUDA parity + latency, C++ core; with TensorRT: engines + parity, latency, C++ runner -> reports/
	$(PY) -m pipeline.gpu_check --task $(TASK) $(ARCH_OPTION)

BENCH_MODEL ?= small
BENCH_BACKEND ?= all-available
BENCH_PREC ?= fp32
BENCH_OUT ?= build/bench

bench: $(STAMP)  ## latency per resolution: make bench RES=256,512 [BENCH_MODEL=full BENCH_BACKEND=torch,ort BENCH_PREC=fp32,int8]
	$(VENV)/bin/mirnet-bench --model $(BENCH_MODEL) --res $(RES) --backend $(BENCH_BACKEND) --precision $(BENCH_PREC) \
		--json $(BENCH_OUT)/latency.json --csv $(BENCH_OUT)/latency.csv --md $(BENCH_OUT)/latency.md --plot $(BENCH_OUT)/latency.png

bench-pytest: $(STAMP)  ## pytest-benchmark suite (tests/bench: small preset, 256/512, torch/ort), JSON output
	mkdir -p $(BENCH_OUT)
	$(VENV)/bin/pytest tests/bench -m bench --benchmark-json $(BENCH_OUT)/pytest-benchmark.json

clean:  ## remove generated artifacts (keeps .venv)
	rm -rf build artifacts demo-output .pytest_cache
