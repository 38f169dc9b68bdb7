"""Command templates and output lines (formats: test_parse.py)."""

import io

from gridwatch.worker.commands import LINE_MAX, build_args, read_lines


def test_args_are_filled_per_token_never_through_a_shell():
    args = build_args("python train.py --name {name} --lr {lr}", {"name": "a b; rm -rf ~ $(x)", "lr": 0.1})
    assert args == ["python", "train.py", "--name", "a b; rm -rf ~ $(x)", "--lr", "0.1"]


def test_over_long_lines_are_cut_and_the_rest_is_read_and_dropped():
    text = "short\n" + "x" * (3 * LINE_MAX + 5) + "\nloss: 0.5\n" + "y" * (LINE_MAX + 1)
    lines = list(read_lines(io.StringIO(text)))
    assert lines[0] == "short" and lines[2] == "loss: 0.5"
    assert lines[1].startswith("x" * LINE_MAX) and f"{2 * LINE_MAX + 5:,} more characters" in lines[1]
    assert lines[3].startswith("y" * LINE_MAX) and "1 more characters" in lines[3] and len(lines) == 4
