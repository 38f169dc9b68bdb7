import math
import re

from gridwatch.worker.commands import build_args, parse_metrics


def test_parse_key_value_scalars():
    assert parse_metrics("epoch 3 loss: 0.123 acc=0.9") == {"loss": 0.123, "acc": 0.9}
    assert parse_metrics("val/loss = 1e-3, lr=3.5E+2") == {"val/loss": 1e-3, "lr": 350.0}
    assert math.isnan(parse_metrics("loss: nan")["loss"])
    assert parse_metrics("time: 12:30:01 path=/tmp/x version 1.2.3") == {}
    assert parse_metrics("Saving to model.pt") == {}


def test_parse_with_regex():
    rx = re.compile(r"step (?P<step>\d+) \| train (?P<loss>[0-9.]+)")
    assert parse_metrics("step 4 | train 0.25 | loss: 9", rx) == {"step": 4.0, "loss": 0.25}


def test_args_are_filled_per_token_never_through_a_shell():
    args = build_args("python train.py --name {name} --lr {lr}", {"name": "a b; rm -rf ~ $(x)", "lr": 0.1})
    assert args == ["python", "train.py", "--name", "a b; rm -rf ~ $(x)", "--lr", "0.1"]
