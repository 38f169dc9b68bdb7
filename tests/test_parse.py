import math
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridwatch.worker.parse import CANON, MetricParser, Parsed

PARSER = MetricParser()


def parse(line: str) -> tuple[dict[str, float], dict[str, float]]:
    found = PARSER.parse(line)
    return found.metrics, found.counters


@pytest.mark.parametrize(
    ("line", "metrics", "counters"),
    [
        ("epoch 1 loss: 0.53 val_loss=0.61", {"loss": 0.53, "val_loss": 0.61}, {"epoch": 1}),
        ("loss=0.25, acc=0.91", {"loss": 0.25, "acc": 0.91}, {}),
        ("val/loss = 1e-3, lr=3.5E+2", {"val_loss": 1e-3, "lr": 350.0}, {}),
        ("acc: 93.2%", {"acc": 93.2}, {}),
        ("Final accuracy: 0.93.", {"final_accuracy": 0.93}, {}),
        # Keras
        ("469/469 [==============================] - 3s 6ms/step - loss: 0.2925 - accuracy: 0.9153 - val_loss: "
         "0.1386 - val_accuracy: 0.9589",
         {"loss": 0.2925, "accuracy": 0.9153, "val_loss": 0.1386, "val_accuracy": 0.9589}, {}),
        # Hugging Face Trainer prints a Python dict, not JSON
        ("{'loss': 0.5, 'learning_rate': 5e-05, 'epoch': 0.27}", {"loss": 0.5, "learning_rate": 5e-05},
         {"epoch": 0.27}),
    ],
)
def test_key_value_pairs(line, metrics, counters):
    assert parse(line) == (metrics, counters)


def test_special_values():
    metrics, _ = parse("loss: nan acc: -inf lr: 1e-3 grad=+Infinity")
    assert math.isnan(metrics["loss"]) and metrics["acc"] == -math.inf and metrics["grad"] == math.inf
    assert metrics["lr"] == 1e-3


@pytest.mark.parametrize(
    ("line", "metrics", "counters"),
    [
        ("test loss: 0.0123", {"test_loss": 0.0123}, {}),
        ("train loss: 0.5, test loss: 0.6", {"train_loss": 0.5, "test_loss": 0.6}, {}),
        ("epoch 3 loss: 0.5", {"loss": 0.5}, {"epoch": 3}),
        ("STEP:  3", {}, {"step": 3}),  # PyTorch examples' time_sequence_prediction
        ("valid ppl: 330.12", {"valid_ppl": 330.12}, {}),
        ("Val-Acc=0.9", {"val_acc": 0.9}, {}),
        ("train/loss=0.3", {"train_loss": 0.3}, {}),
        ("Test set: Average loss: 0.0335, Accuracy: 9890/10000 (99%)", {"average_loss": 0.0335}, {}),
        # PyTorch examples' mnist: a tab separates the fields
        ("Train Epoch: 1 [0/60000 (0%)]\tLoss: 2.300039", {"loss": 2.300039}, {"epoch": 1}),
    ],
)
def test_multi_word_keys(line, metrics, counters):
    assert parse(line) == (metrics, counters)


@pytest.mark.parametrize(
    ("line", "metrics", "counters"),
    [
        ("| end of epoch   1 | time:  9.87s | valid loss  5.80 | valid ppl   330.12",
         {"time": 9.87, "valid_loss": 5.80, "valid_ppl": 330.12}, {"epoch": 1}),
        ("| epoch   1 |   200/ 2983 batches | lr 20.00 | ms/batch 45.12 | loss  7.63 | ppl  2064.82",
         {"lr": 20.0, "ms_batch": 45.12, "loss": 7.63, "ppl": 2064.82}, {"epoch": 1, "batch": 200}),
        ("| End of training | test loss  5.50 | test ppl   245.39", {"test_loss": 5.5, "test_ppl": 245.39}, {}),
        ("-" * 89, {}, {}),
        # PyTorch examples' imagenet ProgressMeter: tab-separated `name value (average)`
        ("Epoch: [0][ 10/5005]\tTime  0.123 ( 0.456)\tData  0.001 ( 0.002)\tLoss 6.9307e+00 (6.9307e+00)\t"
         "Acc@1   0.00 (  0.10)\tAcc@5   0.00 (  0.49)",
         {"time": 0.123, "data": 0.001, "loss": 6.9307, "acc@1": 0.0, "acc@5": 0.0}, {"epoch": 0}),
    ],
)
def test_pipe_and_tab_fields(line, metrics, counters):
    assert parse(line) == (metrics, counters)


@pytest.mark.parametrize(
    ("line", "metrics", "counters"),
    [
        ('{"epoch": 2, "loss": 0.31, "val_acc": 0.88, "note": "x"}', {"loss": 0.31, "val_acc": 0.88}, {"epoch": 2}),
        ('{"step": 10, "val": {"loss": 0.4, "top k": {"acc": 0.7}}, "ok": true, "xs": [1, 2]}',
         {"val_loss": 0.4, "val_top_k_acc": 0.7}, {"step": 10}),
        ('{"progress": {"epoch": 4}, "loss": NaN}', {"loss": math.nan}, {"epoch": 4}),
        ('INFO:root:{"global_step": 7, "loss": 1.5}', {"loss": 1.5}, {"global_step": 7}),
        ('iter 5 {"loss": 1.5}', {"loss": 1.5}, {"iter": 5}),
        ('{"huge": 1' + "0" * 400 + ', "loss": 2}', {"loss": 2.0}, {}),
        ("[1, 2, 3]", {}, {}),
    ],
)
def test_json_lines(line, metrics, counters):
    got_metrics, got_counters = parse(line)
    assert got_metrics.keys() == metrics.keys() and got_counters == counters
    for key, value in metrics.items():
        assert got_metrics[key] == value or (math.isnan(value) and math.isnan(got_metrics[key]))


@pytest.mark.parametrize(
    ("line", "metrics", "counters"),
    [
        ("Epoch 3: 100%|██████████| 469/469 [00:12<00:00, 38.2it/s, loss=0.123, acc=0.961]",
         {"loss": 0.123, "acc": 0.961}, {"epoch": 3}),
        ("\rEpoch 1:  50%|█████     | 1/2 [00:01<00:01,  1.00it/s, loss=0.5]"
         "\rEpoch 1: 100%|██████████| 2/2 [00:02<00:00,  1.00it/s, loss=0.4]", {"loss": 0.4}, {"epoch": 1}),
        ("\r 45%|####5     | 45/100 [00:09<00:11,  4.87it/s]\r", {}, {}),
        ("  0%|          | 0/100 [00:00<?, ?it/s]", {}, {}),
        ("100%|██████████| 10/10 [01:02<00:00,  6.21s/it, train_loss=1.2]", {"train_loss": 1.2}, {}),
        # PyTorch Lightning: v_num is the log folder's version, not a metric
        ("Epoch 0: 100%|██████████| 1875/1875 [00:15<00:00, 120.00it/s, v_num=0, train_loss=0.123]",
         {"train_loss": 0.123}, {"epoch": 0}),
        ("\x1b[A\x1b[32mloss\x1b[0m: 0.5", {"loss": 0.5}, {}),
    ],
)
def test_tqdm_lines(line, metrics, counters):
    assert parse(line) == (metrics, counters)


@pytest.mark.parametrize(
    ("line", "counters"),
    [
        ("step: 12", {"step": 12}),
        ("steps=12", {"step": 12}),
        ("Epoch 1/10", {"epoch": 1}),
        ("Epoch [1/10], Step [100/600], Loss: 0.2153", {"epoch": 1, "step": 100}),
        ("Iteration 100, lr = 0.01", {"iter": 100}),
        ("it 7", {"iter": 7}),
        ("global_step=1000", {"global_step": 1000}),
        ("update 5 | round 2 | fold 3", {"update": 5, "round": 2, "fold": 3}),
        ("ITER: 4 BATCH=5 Epochs 6", {"iter": 4, "batch": 5, "epochs": 6}),  # a setting, not the epoch it is in
        ("469/469 [100/600] 3/4", {}),  # N/M without a counter word
        ("epoch_time: 12.5", {}),  # a counter word inside a name is not a counter
    ],
)
def test_counters(line, counters):
    metrics, got = parse(line)
    assert got == counters
    assert not set(metrics) & set(CANON)


@pytest.mark.parametrize(
    "line",
    [
        "2026-11-25 14:03:11 starting",
        "[2026-11-25 14:03:11,123] INFO - started at 14:03",
        "torch 2.13.0 cuda 12.4.1 Python 3.11.4",
        "torch==2.1, version: 2.13.0",
        "Using torch version: 2.13.0+cu128",
        "Saving to /data/run3/model_7.pt",
        "Saving checkpoints/epoch=3-step=500.ckpt",
        "Downloading https://download.pytorch.org/models/resnet18-f37072fd.pth",
        "url=http://localhost:8080/x?lr=0.1",
        "Namespace(lr=0.1, batch_size=64, epochs=10, seed=1)",
        "INFO:root:Namespace(lr=0.1)",
        "commit 0xdeadbeef id=3fa2 hash: 1a2b",
        "run_3 finished, trial_id=4, run_id: 5",
        "seed: 42 pid=1234 rank: 0",
        "I1125 14:03:11.123456 12345 train.py:42] starting",
        "time: 12:30:01",
        "model_v2.1 loaded",
        "loss: 0.5abc values: 1,234 ratio=3-4",
        "",
        "\r\r\n",
    ],
)
def test_not_metrics(line):
    assert parse(line) == ({}, {})


def test_log_prefixes_are_skipped():
    assert parse("INFO:root:epoch 2 loss: 0.5") == ({"loss": 0.5}, {"epoch": 2})
    assert parse("[2026-11-25 14:03:11,123] INFO - acc: 93.2%") == ({"acc": 93.2}, {})
    assert parse("2026-11-25 14:03:11 | INFO | step=3 loss=0.1") == ({"loss": 0.1}, {"step": 3})
    assert parse("I1125 14:03:11.123456 12345 train.py:42] loss: 0.3") == ({"loss": 0.3}, {})


def test_user_regexes_add_to_the_built_in_formats():
    parser = MetricParser([r"step (?P<step>\d+) \| train (?P<loss>[0-9.]+)", r"reward=(?P<reward>\S+)"])
    found = parser.parse("step 4 | train 0.25 | loss: 9 | acc: 0.5")
    assert found.counters == {"step": 4}
    assert found.metrics["loss"] == 0.25  # the regex wins over the built-in `loss: 9`
    assert found.metrics["acc"] == 0.5  # the built-in still works
    assert parser.parse("reward=abc").metrics == {}  # a group that is no number is skipped


def test_user_regexes_see_namespace_lines_and_counter_groups():
    parser = MetricParser([r"lr=(?P<lr>[\d.]+)", r"Iteration (?P<Iteration>\d+)"])
    assert parser.parse("Namespace(lr=0.1, epochs=3)") == Parsed({"lr": 0.1}, {})
    assert parser.parse("Iteration 9 done") == Parsed({}, {"iter": 9})


def test_a_bad_user_regex_fails_at_construction():
    with pytest.raises(re.error):
        MetricParser(["(unclosed"])


@given(st.text())
def test_never_raises_on_any_text(line):
    found = PARSER.parse(line)
    assert all(isinstance(v, float) for v in (*found.metrics.values(), *found.counters.values()))
    assert not set(found.metrics) & set(CANON)


TRAINING_ALPHABET = st.sampled_from(list("epochstlrEa0123456789.:=|/ \t\r%[]{}\"'-_+,()<>?@") + ["\x1b[", "█"])


@given(st.lists(TRAINING_ALPHABET, max_size=200).map("".join))
def test_never_raises_on_training_like_text(line):
    found = MetricParser([r"loss (?P<loss>\S+)", r"(?P<step>\d+)"]).parse(line)
    assert not set(found.metrics) & set(CANON)


@pytest.mark.parametrize(
    "line",
    ["a" * 50_000, "a." * 25_000, "1" * 50_000 + "%", "epoch" + " " * 50_000, "x " * 25_000,
     "| " + "a " * 25_000, "{" * 50_000 + "}", '{"a":' * 10_000 + "1" + "}" * 10_000, "1:" * 25_000],
)
def test_long_lines_stay_fast(line):
    start = time.perf_counter()
    PARSER.parse(line)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("line", [
    # torch's deprecation warning, printed to stderr (merged into the output) by word_language_model
    "\tadd_(Tensor other, *, Number alpha = 1) (Triggered internally at "
    "/pytorch/torch/csrc/utils/python_arg_parser.cpp:1691.)",
    "main.py:190: UserWarning: This overload of add_ is deprecated: loss: 3",
    "Adam(lr=0.001, betas=(0.9, 0.999), weight_decay=0)",  # an optimizer echoed back: hyperparameters
    "ValueError: loss=nan is not allowed",
])
def test_warnings_exceptions_and_echoed_calls_are_not_metrics(line):
    assert PARSER.parse(line).metrics == {}


def test_a_parenthesised_call_does_not_glue_keys_together():
    assert PARSER.parse("train(loss=0.3) val_loss: 0.2").metrics == {"val_loss": 0.2}
    assert PARSER.parse("Epoch: [0][ 10/5005]\tTime  0.123 ( 0.456)\tLoss 6.9 (6.9)").metrics == {
        "time": 0.123, "loss": 6.9}


@pytest.mark.parametrize(
    ("line", "counters", "totals"),
    [
        ("epoch 3/6 - loss: 0.41 - val_acc: 0.83", {"epoch": 3}, {"epoch": 6}),
        ("Epoch [1/10], Step [100/600], Loss: 0.2153", {"epoch": 1, "step": 100}, {"epoch": 10, "step": 600}),
        ("Epoch 3", {"epoch": 3}, {}),
        ("epoch=3 loss=0.5", {"epoch": 3}, {}),
        ("[3/6] loss: 0.41 val_acc: 0.83", {"epoch": 3}, {"epoch": 6}),  # a leading [e/N] with metrics
        ("[0/5][50/1583]\tLoss_D: 1.2\tLoss_G: 3.4", {"epoch": 0, "batch": 50}, {"epoch": 5}),  # DCGAN
        ("[1/3] Building wheel", {}, {}),  # no metrics: a list's item, not an epoch
        ("loss: 0.5 [3/6]", {}, {}),  # not at the start
        ("[7/6] loss: 0.5", {}, {}),  # more than the total: no epoch
        ("| epoch   1 |   200/ 2983 batches | loss  7.63", {"epoch": 1, "batch": 200}, {"batch": 2983}),
    ],
)
def test_epoch_counters_and_their_totals(line, counters, totals):
    found = PARSER.parse(line)
    assert found.counters == counters and found.totals == totals
    assert "epoch" not in found.metrics


@pytest.mark.parametrize(
    ("line", "bar"),
    [
        (" 17%|#         | 1/6 [00:00<00:01,  5.00it/s, loss=0.9]", 1 / 6),
        ("100%|##########| 6/6 [00:01<00:00,  5.00it/s, loss=0.5]", 1.0),
        ("100%|█████████▉| 995/1000 [00:10<00:00]", 0.995),  # tqdm rounds its percentage; the count does not
        ("Epoch 3:  50%|█████     | 1/2 [00:01<00:01,  1.00it/s, loss=0.5]", 0.5),
        (" 45%|####5     | [00:09<00:11]", 0.45),  # no count: the percentage
        ("epoch 3/6 - loss: 0.41", None),
        ("469/469 [==============================] - 3s 6ms/step - loss: 0.29", None),  # Keras: an epoch's line
    ],
)
def test_tqdm_bars_say_how_far_they_are(line, bar):
    assert PARSER.parse(line).bar == bar
