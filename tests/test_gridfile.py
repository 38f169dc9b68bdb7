import tomllib

from hypothesis import given
from hypothesis import strategies as st

from gridwatch.grid.gridfile import dumps
from gridwatch.grid.spec import parse_grid

from helpers import REPO

scalars = st.one_of(st.booleans(), st.integers(-10**9, 10**9), st.floats(allow_nan=False),
                    st.text(max_size=20))


def test_demo_grid_round_trips():
    text = (REPO / "resources" / "demo.toml").read_text()
    data = tomllib.loads(text)
    again = dumps(data)
    assert tomllib.loads(again) == data
    a = parse_grid(text, REPO / "resources" / "demo.toml")
    b = parse_grid(again, REPO / "resources" / "demo.toml")
    assert a.models == b.models and a.devices == b.devices


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.one_of(scalars, st.lists(scalars, max_size=4)),
                       max_size=5))
def test_any_values_round_trip(table):
    data = {"run": {"name": "x"}, "model": [{"name": "m", "grid": table}]}
    assert tomllib.loads(dumps(data)) == data
