# The README's two commands. Each sets up what is missing (virtual environment, torch,
# ganserve) and then runs; see scripts/dev for the variables (VENV, TORCH, TORCH_VERSION).
#
#   make up                # start the service on http://127.0.0.1:8000 (Ctrl-C stops it)
#   make test              # run the tests
#   make up ARGS="--port 8100"      make test ARGS="tests/gan -x"      make up TORCH=cpu

ARGS ?=

.PHONY: up test setup
up:
	@scripts/dev up $(ARGS)

test:
	@scripts/dev test $(ARGS)

setup:
	@scripts/dev setup dev
