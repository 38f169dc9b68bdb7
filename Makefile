# Two commands on a fresh machine: `make run` (install, then run the demo grid) and `make test`.
PY ?= python3
VENV ?= .venv
# CPU build by default (small, and what CI uses); GPU users: `make TORCH=torch run` or keep the torch you have.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run run-cli test lint typecheck bench screenshot docs-screenshots system-deps display-deps test-deps clean

# System packages, installed from Debian only where missing (root or sudo), as library:package or command:package.
# Shared libraries Qt needs even offscreen.
QT_LIBS := libEGL.so.1:libegl1 libGL.so.1:libgl1 libxkbcommon.so.0:libxkbcommon0 libfontconfig.so.1:libfontconfig1 \
	libdbus-1.so.3:libdbus-1-3 libglib-2.0.so.0:libglib2.0-0
# What Qt's xcb platform plugin links (`ldd` on PySide6's Qt/plugins/platforms/libqxcb.so): the window on X11.
XCB_LIBS := libxkbcommon-x11.so.0:libxkbcommon-x11-0 libxcb-cursor.so.0:libxcb-cursor0 libxcb-icccm.so.4:libxcb-icccm4 \
	libxcb-util.so.1:libxcb-util1 libxcb-image.so.0:libxcb-image0 libxcb-keysyms.so.1:libxcb-keysyms1 \
	libxcb-randr.so.0:libxcb-randr0 libxcb-render-util.so.0:libxcb-render-util0 libxcb-shm.so.0:libxcb-shm0 \
	libxcb-sync.so.1:libxcb-sync1 libxcb-xfixes.so.0:libxcb-xfixes0 libxcb-render.so.0:libxcb-render0 \
	libxcb-shape.so.0:libxcb-shape0 libxcb-xkb.so.1:libxcb-xkb1 libxcb.so.1:libxcb1 libX11-xcb.so.1:libx11-xcb1 \
	libX11.so.6:libx11-6
# The tests' tools: an X server for the real window (Xvfb), X window queries, the desktop entry validator.
TEST_TOOLS := xvfb-run:xvfb xauth:xauth xwininfo:x11-utils xprop:x11-utils desktop-file-validate:desktop-file-utils
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
LDCONFIG := $(shell command -v ldconfig 2>/dev/null || echo /sbin/ldconfig)
# $(call apt_missing,LIBRARIES,COMMANDS,WHAT): one shell command that installs the packages of the libraries
# ldconfig lacks and of the commands PATH lacks; nothing when all are there.
apt_missing = missing=""; \
	for pair in $(1); do $(LDCONFIG) -p | grep -qF "$${pair%%:*} (" || missing="$$missing $${pair\#*:}"; done; \
	for pair in $(2); do command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair\#*:}"; done; \
	missing=$$(echo $$missing | tr ' ' '\n' | sort -u | xargs); \
	if [ -n "$$missing" ]; then echo "installing $(3): $$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

$(STAMP): pyproject.toml
	@$(PY) -m venv $(VENV) || { echo "error: '$(PY) -m venv' failed; on Debian: apt-get install python3-venv"; exit 2; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test,ray]"
	@touch $(STAMP)

install: $(STAMP) system-deps

system-deps:
	@$(call apt_missing,$(QT_LIBS),,Qt's system libraries)

# On a display, the window also needs the xcb plugin's libraries (X11, and XWayland where Qt falls back to it).
display-deps:
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then $(call apt_missing,$(XCB_LIBS),,the window's X11 libraries); fi

# What the tests need besides Python packages: the xcb libraries and the tools above (CI: root, a fresh Debian).
test-deps: system-deps
	@$(call apt_missing,$(XCB_LIBS),$(TEST_TOOLS),what the tests need)

# The window on the built-in demo grid (press Run); with no display, the same grid headless in the terminal.
run: install display-deps
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then $(BIN)/gridwatch-gui resources/demo.toml; \
	else echo "no display: running the demo grid headless (the window needs a display)"; \
	$(BIN)/gridwatch run resources/demo.toml; fi

run-cli: install
	$(BIN)/gridwatch run resources/demo.toml

test: install test-deps lint
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
	$(BIN)/python benchmarks/eta.py

# A real window under Xvfb while the demo grid runs, captured for the README.
screenshot: install
	@command -v xvfb-run >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq xvfb xauth; }
	@$(SUDO) apt-get install -y -qq libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 >/dev/null
	xvfb-run -a -s "-screen 0 1600x1000x24" $(BIN)/python -m gridwatch.gui.screenshot resources/screenshot.png 68

# The user guide's screenshots (docs/img/*.png), each scenario in a temporary runs and config folder: ~2 minutes.
docs-screenshots: install
	@command -v xvfb-run >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq xvfb xauth; }
	@$(call apt_missing,$(XCB_LIBS),,the window's X11 libraries)
	xvfb-run -a -s "-screen 0 1600x1000x24" $(BIN)/python docs/screenshots.py docs/img

clean:
	rm -rf $(VENV) runs build .pytest_cache
