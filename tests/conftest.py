import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Demo datasets go to a throwaway folder, never the user's cache (workers inherit the variable)."""
    os.environ["GRIDWATCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ.setdefault("GRIDWATCH_RUNS", str(tmp_path_factory.mktemp("runs")))  # never the user's runs
    yield


@pytest.fixture
def outside(tmp_path):
    """A folder outside the repository, as a user's project would be."""
    assert REPO not in tmp_path.parents
    return tmp_path


@pytest.fixture(scope="session")
def wheel(tmp_path_factory):
    """The wheel, built once per session from a copy of the source tree (see helpers.build_wheel)."""
    from helpers import build_wheel

    return build_wheel(tmp_path_factory.mktemp("wheel-src") / "gridwatch", tmp_path_factory.mktemp("wheel-dist"))


@pytest.fixture(scope="session")
def venv(wheel, tmp_path_factory):
    """One fresh venv per session with the wheel installed, shared by every test that installs the package
    as a stranger would (test_wheel.py, test_desktop.py). Paid inside the first test that uses it."""
    from helpers import fresh_venv

    return fresh_venv(wheel, tmp_path_factory.mktemp("fresh") / "venv")
