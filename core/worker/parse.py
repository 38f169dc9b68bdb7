"""Metrics from the lines an unmodified training script prints, in the formats real scripts use, unconfigured.

A line gives metrics (what to plot and rank) and counters (step, epoch, ...: the x-axis, never a metric).
What only looks numeric -- dates, clock times, versions, paths, URLs, tqdm's bar and rate, argparse's
`Namespace(...)` echo -- is blanked out or skipped before the key/value scan, so it cannot become a metric.
Keys are lower-cased, and runs of spaces, dots, dashes and slashes inside them become "_" (`Val-Acc` ->
`val_acc`). Counter names are canonical: `steps` -> `step`, `iteration`/`it` -> `iter`, `batches` -> `batch`;
`epochs` stays `epochs` (`epochs: 10` is how a script echoes its setting, not the epoch it is in).
A JSON object line gives its numbers; nested objects are flattened with "_" (`{"val": {"loss": 1}}` ->
`val_loss`), a nested counter word is still a counter. A counter's total is kept too (`epoch 3/6`,
`Epoch [3/6]`; a line that starts with `[3/6]` and gives metrics counts epoch 3 of 6), and a tqdm bar caught
mid-way (`45%|####5 | 45/100`) is marked, so its values can be told from an epoch's. Standard library only: it
runs inside the worker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

CANON = {
    "step": "step", "steps": "step", "global_step": "global_step", "epoch": "epoch", "epochs": "epochs",
    "iter": "iter", "iters": "iter", "iteration": "iter", "iterations": "iter", "it": "iter",
    "batch": "batch", "batches": "batch", "update": "update", "updates": "update", "round": "round",
    "fold": "fold",
}
IGNORED = {"v_num", "id", "pid", "seed", "rank", "local_rank", "world_size", "version"}  # echoes and ids
IGNORED_ENDINGS = ("_id", "_version")

NUMBER = r"(?:[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|[-+]?(?:nan|inf(?:inity)?))"
UNIT = r"(?:%|m?s)?"  # `93.2%` is 93.2, `9.87s` is 9.87
END = r"(?![\w:/%-]|\.\w|,\d)"  # no longer token goes on: 2.13.0, 3.pt, 9890/10000, 1,234, 3-4
CHUNK = r"[a-z_][\w@]*(?:[./-]+[\w@]+)*"  # `val_loss`, `train/loss`, `Val-Acc`, `acc@1`
KEY = rf"{CHUNK}(?: +{CHUNK}){{0,2}}"  # up to three words: `test loss`, `end of epoch`
COUNTER_WORD = r"(?:" + "|".join(sorted(CANON, key=len, reverse=True)) + r")\b"

KEY_VALUE = re.compile(rf"(?<![\w.@/-])['\"]?({KEY})['\"]?\s*[:=]\s*({NUMBER}){UNIT}{END}", re.I)
FIELD = re.compile(rf"\s*({KEY})(?:\s*[:=]\s*|\s+)({NUMBER}){UNIT}(?:\s*\(\s*{NUMBER}{UNIT}\s*\))?\s*", re.I)
COUNTER = re.compile(
    rf"(?<![\w.@/-])({COUNTER_WORD})\s*(?:[:=]\s*)?(?:\[\s*)?(\d+(?:\.\d+)?)(?:\s*/\s*(\d+))?(?![\w%/]|\.\w|-\d)",
    re.I,
)
COUNT_OF = re.compile(rf"(?<![\w.])(\d+)\s*/\s*(\d+)\s+({COUNTER_WORD})", re.I)  # `200/ 2983 batches`
LEADING_COUNT = re.compile(r"\s*\[\s*(\d+)\s*/\s*(\d+)\s*\](?:\s*\[\s*(\d+)\s*/\s*\d+\s*\])?")  # `[3/6][50/1583]`
TQDM_BAR = re.compile(r"(?<!\d)(\d+)%\|[^|]*\|(?:\s*(\d+)/(\d+)(?![\d.]))?")  # `45%|####5 | 45/100`
NOISE = re.compile(
    "|".join([
        r"\x1b\[[0-9;?]*[A-Za-z]",  # terminal colours and cursor moves
        r"(?<![\w+.-])[A-Za-z][\w+.-]*://\S*",  # URLs
        r"(?<![\w.])(?:~|\.\.?)?/[^\s,;'\")\]]*",  # absolute and ./ ../ ~/ paths
        r"(?<![\w.-])[\w.-]+\.py:\d+",  # `train.py:42` in log prefixes
        r"(?<!\d)\d+%\|[^|]*\|",  # tqdm's `100%|█████|`
        r"\d{4}-\d{2}-\d{2}(?:[ T]\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?)?",  # dates, with their times
        r"(?<![\w.])\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?",  # clock times, tqdm's `00:12<00:00`
        r"(?<![\w.])(?:\d[\d.]*|\?)[A-Za-z]+/[A-Za-z]+\b",  # rates: `38.2it/s`, `?it/s`, Keras' `6ms/step`
    ])
)
JSON_DEPTH = 4  # deeper objects are dropped, not flattened


@dataclass
class Parsed:
    metrics: dict[str, float] = field(default_factory=dict)  # metric name -> value found on this line
    counters: dict[str, float] = field(default_factory=dict)  # step, epoch, ... found on this line
    totals: dict[str, float] = field(default_factory=dict)  # a counter's N where the line says `epoch 3/6`
    bar: float | None = None  # a tqdm bar's share done (1.0: finished); None: the line is no tqdm bar

    def put(self, raw_key: str, value: float, overwrite: bool = False) -> None:
        """A key is a counter when it is a counter word, or several words ending in one (`Train Epoch`)."""
        key = normalize(raw_key)
        words = raw_key.lower().split()
        name = CANON.get(key) or (CANON.get(words[-1]) if len(words) > 1 else None)
        if name is not None:
            target, key = self.counters, name
        elif key in IGNORED or key.endswith(IGNORED_ENDINGS):
            return
        else:
            target = self.metrics
        if overwrite or key not in target:  # the first value on a line wins: later ones tend to be averages
            target[key] = value


RAISED = re.compile(r"\b[A-Z]\w*(?:Warning|Error|Exception)\b:")
CALL = re.compile(r"(?<=[\w.])\((?:[^()]++|\([^()]*+\))*+\)")  # the (...) of name(...), one level nested


class MetricParser:
    """The built-in formats, plus the user's regexes: a named group is a key, and it wins over a built-in."""

    def __init__(self, regexes: Sequence[str] = ()) -> None:
        self._regexes = [re.compile(r) for r in regexes]  # a bad regex fails here, not on every line

    def parse(self, line: str) -> Parsed:
        text = last_segment(line)
        out = Parsed()
        if bar := TQDM_BAR.search(text):
            n, total = bar[2], bar[3]
            out.bar = float(n) / float(total) if n and float(total) > 0 else float(bar[1]) / 100
        # Not results: argparse's echo of the hyperparameters, warnings and exceptions (`UserWarning: ...`),
        # and call-like text such as `Adam(lr=0.001)` or a signature `add_(Tensor other, *, Number alpha = 1)`.
        if "Namespace(" not in text and not RAISED.search(text):
            parse_builtin(CALL.sub(", ", text), out)
        for regex in self._regexes:
            for match in regex.finditer(text):
                for key, value in match.groupdict().items():
                    number = to_float(value)
                    if number is not None:
                        out.put(key, number, overwrite=True)
        return out


def last_segment(line: str) -> str:
    """What a terminal would show: tqdm redraws its line with `\\r`, so the last non-empty segment."""
    segments = [s for s in line.split("\r") if s.strip()]
    return segments[-1] if segments else ""


def normalize(key: str) -> str:
    return re.sub(r"[\s./-]+", "_", key.strip().lower())


def to_float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text.strip().rstrip("%"))
    except ValueError:
        return None


def parse_builtin(text: str, out: Parsed) -> None:
    start = text.find("{")
    if start >= 0 and text.rstrip().endswith("}") and parse_json(text[start:], out):
        text = text[:start]  # a log prefix before the object may still hold a counter
    text = NOISE.sub(" ", text)
    for match in KEY_VALUE.finditer(text):
        out.put(match[1], float(match[2]))
    if "|" in text or "\t" in text:  # `| valid loss  5.80 |`: within a field, `key value` is enough
        for part in re.split(r"[|\t]", text):
            if found := FIELD.fullmatch(part):
                out.put(found[1], float(found[2]))
    for match in COUNTER.finditer(text):
        _count(out, CANON[match[1].lower()], match[2], match[3])
    for match in COUNT_OF.finditer(text):
        _count(out, CANON[match[3].lower()], match[1], match[2])
    if out.metrics and "epoch" not in out.counters and (lead := LEADING_COUNT.match(text)):
        if float(lead[1]) <= float(lead[2]):  # `[3/6] loss: 0.4`: epoch 3 of 6 (`[0/5][50/1583]`: and batch 50)
            _count(out, "epoch", lead[1], lead[2])
            if lead[3] is not None:
                _count(out, "batch", lead[3], None)


def _count(out: Parsed, name: str, value: str, total: str | None) -> None:
    """The first mention of a counter on a line wins, with its total when it has one."""
    if name in out.counters:
        return
    out.counters[name] = float(value)
    if total is not None and float(total) > 0:
        out.totals[name] = float(total)


def parse_json(text: str, out: Parsed) -> bool:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # Python's dict repr (single quotes) goes to the key/value scan
        return False
    if not isinstance(data, dict):
        return False
    for key, value in flatten(data, "", JSON_DEPTH):
        out.put(key, value)
    return True


def flatten(data: dict[str, Any], prefix: str, depth: int) -> Iterator[tuple[str, float]]:
    for key, value in data.items():
        if isinstance(value, dict) and depth > 1:
            yield from flatten(value, f"{prefix}{key} ", depth - 1)  # words: `put` joins them with "_"
        elif isinstance(value, int | float) and not isinstance(value, bool):
            try:
                yield f"{prefix}{key}", float(value)
            except OverflowError:  # an integer beyond float's range
                pass
