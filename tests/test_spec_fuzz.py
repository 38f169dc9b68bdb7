"""Arbitrary TOML-ish text and arbitrary structures: only SpecError ever escapes, and it names the file."""

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridwatch.grid.gridfile import dumps
from gridwatch.grid.spec import SpecError, parse_grid

PATH = "/tmp/fuzz/grid.toml"
KEYS = ["run", "devices", "model", "name", "folds", "seed", "trainable", "command", "device", "grid", "fixed",
        "cpu_slots", "gpus", "threads_per_cpu_slot", "metric", "goal", "metrics_regex", "cwd", "x", "lr"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["auto", "all", "none", "cpu", "gpu", "any",
                                                           "t.py:fit", "gridwatch.demo:mlp", "echo {x}"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
                      max_leaves=20)
toml_chars = string.ascii_letters + string.digits + " =[]{}\"'.,:#\n-_\\"


def _check(parse):
    try:
        parse()
    except SpecError as exc:
        assert PATH in str(exc) or "/tmp/fuzz/grid.toml" in str(exc)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(alphabet=toml_chars, max_size=200))
def test_arbitrary_text(text):
    _check(lambda: parse_grid(text, PATH))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=4))
def test_arbitrary_structures(data):
    try:
        text = dumps({k: v for k, v in data.items()})
    except TypeError:
        return  # None has no TOML form; such data cannot come from a file
    _check(lambda: parse_grid(text, PATH))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=4),
       st.lists(st.dictionaries(st.sampled_from(KEYS), values, max_size=6), max_size=3))
def test_arbitrary_structures_straight_to_the_validator(top, models):
    from pathlib import Path

    from gridwatch.grid.spec import _grid

    data = dict(top)
    if models:
        data["model"] = models
    _check(lambda: _grid(data, Path(PATH), ""))
