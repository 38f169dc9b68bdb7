# Two commands on a fresh machine: `make run` (install, then run the demo grid) and `make test`.
PY ?= python3
VENV ?= .venv
# CPU build by default (small, and what CI uses); GPU users: `make TORCH=torch run` or keep the torch you have.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run run-cli test lint typecheck bench screenshot system-deps clean

# Shared libraries Qt needs even offscreen; installed from Debian only where missing (root or sudo).
QT_LIBS := libEGL.so.1 libGL.so.1 libxkbcommon.so.0 libfontconfig.so.1 libdbus-1.so.3 libglib-2.0.so.0
QT_DEBS := libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(STAMP): pyproject.toml
	@$(PY) -m venv $(VENV) || { echo "error: '$(PY) -m venv' failed; on Debian: apt-get install python3-venv"; exit 2; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $(STAMP)

install: $(STAMP) system-deps

system-deps:
	@missing=0; for lib in $(QT_LIBS); do ldconfig -p | grep -q "$$lib" || missing=1; done; \
	if [ $$missing = 1 ]; then \
		echo "installing Qt's system libraries: $(QT_DEBS)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $(QT_DEBS); \
	fi

# The window on the built-in demo grid (press Run); with no display, the same grid headless in the terminal.
run: install
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then $(BIN)/gridwatch-gui resources/demo.toml; \
	else echo "no display: running the demo grid headless (the window needs a display)"; \
	$(BIN)/gridwatch run resources/demo.toml; fi

run-cli: install
	$(BIN)/gridwatch run resources/demo.toml

test: install lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest

lint: install typecheck
	$(BIN)/ruff check core gui resources tests benchmarks main.py

# mypy on the package as users install it: what the wheel holds, copied into build/typecheck (core/ ->
# gridwatch, gui/ -> gridwatch/gui; see [tool.mypy] in pyproject.toml), so every `gridwatch.*` import resolves
# or is an error. It runs from inside that folder, because mypy also looks up imports in its current folder,
# where the repository's own core/ and gui/ would hide an old `core.x` import. setuptools' build/lib is removed
# before and after: it keeps files deleted from the source. mypy's paths are mapped back to core/ and gui/.
TYPECHECK := build/typecheck
typecheck: install
	@rm -rf build/lib build/bdist.* $(TYPECHECK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation --no-compile --target $(TYPECHECK) .
	@rm -rf build/lib build/bdist.*
	@echo "cd $(TYPECHECK) && mypy -p gridwatch"
	@out=$$(cd $(TYPECHECK) && $(abspath $(BIN))/mypy --config-file $(CURDIR)/pyproject.toml \
		--cache-dir $(CURDIR)/build/mypy-cache 2>&1); status=$$?; printf '%s\n' "$$out" | sed \
		-e 's#^gridwatch/#$(TYPECHECK)/gridwatch/#' -e 's#$(TYPECHECK)/gridwatch/gui/#gui/#g' \
		-e 's#$(TYPECHECK)/gridwatch/resources/#resources/#g' -e 's#$(TYPECHECK)/gridwatch/#core/#g'; \
	exit $$status

bench: install
	$(BIN)/python benchmarks/grid_throughput.py
	$(BIN)/python benchmarks/prefetch.py
	$(BIN)/python benchmarks/placement.py
	QT_QPA_PLATFORM=offscreen $(BIN)/python benchmarks/gui_overhead.py

# A real window under Xvfb while the demo grid runs, captured for the README.
screenshot: install
	@command -v xvfb-run >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq xvfb xauth; }
	@$(SUDO) apt-get install -y -qq libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 >/dev/null
	xvfb-run -a -s "-screen 0 1600x1000x24" $(BIN)/python -m gridwatch.gui.screenshot resources/screenshot.png 68

clean:
	rm -rf $(VENV) runs build .pytest_cache
