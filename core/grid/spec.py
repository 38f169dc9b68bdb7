"""Grid file (TOML) -> validated GridSpec.

Every problem becomes one SpecError naming the file and the key, so the CLI can print a single line and
the window can show it inline. Nothing from the grid file is imported or executed here: trainables are
located on disk and checked with `ast`, which keeps the GUI process free of torch.
"""

from __future__ import annotations

import difflib
import re
import shlex
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridwatch.grid import checks, locate
from gridwatch.grid.checks import SpecError

DEVICES = ("cpu", "gpu", "any")
GOALS = ("max", "min")
RESERVED = ("fold", "n_folds", "seed", "device", "repeat", "trial_dir", "trial_id")
WORKDIRS = ("trial", "shared")
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
PYTHON_RE = re.compile(r"^python(?:\d+(?:\.\d+)*)?$")  # python, python3, python3.11, .venv/bin/python

RUN_KEYS = {"name", "folds", "seed"}
DEVICE_KEYS = {"cpu_slots", "threads_per_cpu_slot", "gpus", "gpu_slots_per_gpu", "ram_budget_gb", "ram_reserve_gb",
               "vram_reserve_gb"}
MODEL_KEYS = {
    "name", "trainable", "command", "device", "grid", "fixed", "metric", "goal", "metrics_regex", "cwd",
    "retries", "timeout", "workdir", "repeats", "recycle_after_trials", "recycle_above_gb",
}
RECYCLE_ABOVE_GB = 2.0  # a worker that grew this much over its start-up RSS is replaced between trials
TOP_KEYS = {"run", "devices", "model"}


@dataclass(frozen=True)
class DeviceSpec:
    cpu_slots: int | None = None  # None = auto
    threads_per_cpu_slot: int = 1
    gpus: tuple[int, ...] | None = None  # None = all
    gpu_slots_per_gpu: int = 1
    ram_budget_gb: float | None = None  # None: all RAM but the reserve
    ram_reserve_gb: float = 2.0  # kept free for the desktop and the app
    vram_reserve_gb: float = 0.5


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "python" | "command"
    target: str  # "module:function", "/abs/file.py:function" or the command template
    device: str
    grid: dict[str, list[Any]]
    fixed: dict[str, Any]
    cwd: str  # the folder its relative paths start from (default: the grid file's)
    metric: str | None = None
    goal: str | None = None
    metrics_regex: tuple[str, ...] = ()  # extra patterns for a command's output, beside the built-in formats
    retries: int = 1  # a trial whose worker dies is run again this many times
    timeout: float | None = None  # seconds without any progress event before a trial is killed
    base: str = ""  # the grid file's folder: where `package.module` trainables are looked up first
    workdir: str = "trial"  # "trial": runs in its own folder that mirrors cwd; "shared": runs in cwd itself
    repeats: int | None = None  # a command without {fold}: this many runs per config (None: one)
    recycle_after_trials: int | None = None  # a worker that ran this many trials is replaced (None: never)
    recycle_above_gb: float = RECYCLE_ABOVE_GB  # ... or that grew this many GiB over its start-up RSS

    @property
    def sees_folds(self) -> bool:
        """Python trainables get the fold in their config; a command only if its template names it."""
        return self.kind == "python" or "{fold" in self.target


@dataclass(frozen=True)
class GridSpec:
    path: str
    name: str
    folds: int
    seed: int
    devices: DeviceSpec
    models: tuple[ModelSpec, ...]
    text: str = field(default="", repr=False)


def load_grid(path: str | Path) -> GridSpec:
    """Read and validate a grid file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(p, "", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(p, "", f"cannot read: {exc}") from None
    return parse_grid(text, p)


def parse_grid(text: str, path: str | Path) -> GridSpec:
    p = Path(path).resolve()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(path, exc) from None
    return _grid(data, p, text)


def _toml_error(path: str | Path, exc: tomllib.TOMLDecodeError) -> SpecError:
    msg = str(exc)
    m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
    if m:
        reason = msg[: m.start()].strip()
        if "Unescaped '\\'" in reason:  # a regex in double quotes, most likely
            reason += " (write regexes in single quotes, e.g. 'loss\\s+(?P<loss>[0-9.]+)')"
        return SpecError(f"{path}:{m.group(1)}:{m.group(2)}", "", f"invalid TOML: {reason}")
    return SpecError(path, "", f"invalid TOML: {msg}")


def _grid(data: dict[str, Any], path: Path, text: str) -> GridSpec:
    checks.no_unknown(path, "", data, TOP_KEYS)
    run = checks.table(path, "run", data.get("run", {}))
    checks.no_unknown(path, "run", run, RUN_KEYS)
    name = checks.string(path, "run.name", run.get("name", path.stem.split(".")[0]))
    if not NAME_RE.match(name):
        raise SpecError(path, "run.name", f"{name!r} may use only letters, digits, '_', '.', '-'")
    folds = checks.whole(path, "run.folds", run.get("folds", 5), minimum=2)
    seed = checks.whole(path, "run.seed", run.get("seed", 0), minimum=0)
    devices = _devices(path, checks.table(path, "devices", data.get("devices", {})))
    raw_models = data.get("model")
    if raw_models is None:
        raise SpecError(path, "model", "no [[model]] tables: add at least one")
    if not isinstance(raw_models, list) or not all(isinstance(m, dict) for m in raw_models):
        raise SpecError(path, "model", "must be an array of tables, written [[model]]")
    if not raw_models:
        raise SpecError(path, "model", "no [[model]] tables: add at least one")
    models = tuple(_model(path, i, m) for i, m in enumerate(raw_models))
    seen: set[str] = set()
    for i, m in enumerate(models):
        if m.name in seen:
            raise SpecError(path, f"model[{i}].name", f"duplicate model name {m.name!r}")
        seen.add(m.name)
    return GridSpec(str(path), name, folds, seed, devices, models, text)


def _devices(path: Path, d: dict[str, Any]) -> DeviceSpec:
    checks.no_unknown(path, "devices", d, DEVICE_KEYS)
    cpu = d.get("cpu_slots", "auto")
    cpu_slots = None if cpu == "auto" else checks.whole(path, "devices.cpu_slots", cpu, minimum=0, auto=True)
    threads = checks.whole(path, "devices.threads_per_cpu_slot", d.get("threads_per_cpu_slot", 1), minimum=1)
    per_gpu = checks.whole(path, "devices.gpu_slots_per_gpu", d.get("gpu_slots_per_gpu", 1), minimum=1)
    budget = _gb(path, "devices.ram_budget_gb", d["ram_budget_gb"]) if "ram_budget_gb" in d else None
    reserve = _gb(path, "devices.ram_reserve_gb", d.get("ram_reserve_gb", 2.0))
    vram_reserve = _gb(path, "devices.vram_reserve_gb", d.get("vram_reserve_gb", 0.5))
    gpus = checks.gpus(path, "devices.gpus", d.get("gpus", "all"))
    return DeviceSpec(cpu_slots, threads, gpus, per_gpu, budget, reserve, vram_reserve)


def _gb(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != value:
        raise SpecError(path, key, f"must be a number of GiB, 0 or more, not {checks.toml_repr(value)}")
    return float(value)


def _model(path: Path, i: int, m: dict[str, Any]) -> ModelSpec:
    where = f"model[{i}]"
    name = m.get("name")
    if name is None:
        raise SpecError(path, f"{where}.name", "missing: every [[model]] needs a name")
    name = checks.string(path, f"{where}.name", name)
    if not NAME_RE.match(name):
        raise SpecError(path, f"{where}.name", f"{name!r} may use only letters, digits, '_', '.', '-'")
    where = f"model[{i}] ({name})"
    checks.no_unknown(path, where, m, MODEL_KEYS)
    device = checks.string(path, f"{where}.device", m.get("device", "any"))
    if device not in DEVICES:
        raise SpecError(path, f"{where}.device", f"{device!r} is not one of {', '.join(DEVICES)}")
    grid = _axes(path, where, checks.table(path, f"{where}.grid", m.get("grid", {})))
    fixed = checks.table(path, f"{where}.fixed", m.get("fixed", {}))
    for key in fixed:
        _param_name(path, f"{where}.fixed.{key}", key)
        if key in grid:
            raise SpecError(path, f"{where}.fixed.{key}", "also given in [model.grid]; keep one")
    base = path.parent
    cwd = str((base / checks.string(path, f"{where}.cwd", m["cwd"])).resolve()) if "cwd" in m else str(base)
    if not Path(cwd).is_dir():
        raise SpecError(path, f"{where}.cwd", f"no such folder: {cwd}")
    kind, target = _trainable(path, where, m, base)
    if kind == "command":
        _check_template(path, f"{where}.command", target, set(grid) | set(fixed) | set(RESERVED))
        _check_script(path, f"{where}.command", target, Path(cwd))
    regex = _regexes(path, where, m, kind)
    metric = checks.string(path, f"{where}.metric", m["metric"]) if "metric" in m else None
    goal = checks.string(path, f"{where}.goal", m["goal"]) if "goal" in m else None
    if goal is not None and goal not in GOALS:
        raise SpecError(path, f"{where}.goal", f'{goal!r} must be "max" or "min"')
    retries = checks.whole(path, f"{where}.retries", m.get("retries", 1), minimum=0)
    timeout = None
    if "timeout" in m:
        t = m["timeout"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
            raise SpecError(path, f"{where}.timeout", f"must be a number of seconds above 0, not {checks.toml_repr(t)}")
        timeout = float(t)
    workdir = checks.string(path, f"{where}.workdir", m.get("workdir", "trial"))
    if workdir not in WORKDIRS:
        raise SpecError(path, f"{where}.workdir", f'{workdir!r} must be "trial" (its own folder) or "shared"')
    repeats = None
    if "repeats" in m:
        repeats = checks.whole(path, f"{where}.repeats", m["repeats"], minimum=1)
        if kind != "command" or "{fold" in target:
            raise SpecError(path, f"{where}.repeats", "only for a command without {fold}: it gets {repeat} "
                            "and a {seed} per repeat; with folds, each fold is already a run")
    after, above = _recycling(path, where, m)
    return ModelSpec(name, kind, target, device, grid, dict(fixed), cwd, metric, goal, regex, retries, timeout,
                     str(base), workdir, repeats, after, above)


def _recycling(path: Path, where: str, m: dict[str, Any]) -> tuple[int | None, float]:
    """When a worker that ran this model's trial is replaced by a fresh one, between trials."""
    after = None
    if "recycle_after_trials" in m:
        after = checks.whole(path, f"{where}.recycle_after_trials", m["recycle_after_trials"], minimum=1)
    above = m.get("recycle_above_gb", RECYCLE_ABOVE_GB)
    if isinstance(above, bool) or not isinstance(above, (int, float)) or not above > 0:  # inf: never
        raise SpecError(path, f"{where}.recycle_above_gb", "must be a number of GiB above 0 (growth of a worker "
                        f"over its start-up memory; inf for never), not {checks.toml_repr(above)}")
    return after, float(above)


def _trainable(path: Path, where: str, m: dict[str, Any], base: Path) -> tuple[str, str]:
    has_t, has_c = "trainable" in m, "command" in m
    if has_t == has_c:
        what = "both" if has_t else "neither"
        raise SpecError(path, f"{where}.trainable", f"give exactly one of trainable or command ({what} given)")
    if has_c:
        cmd = checks.string(path, f"{where}.command", m["command"]).strip()
        if not cmd:
            raise SpecError(path, f"{where}.command", "is empty")
        return "command", cmd
    ref = checks.string(path, f"{where}.trainable", m["trainable"])
    try:
        return "python", locate.check_trainable(ref, base)
    except locate.LocateError as exc:
        raise SpecError(path, f"{where}.trainable", str(exc)) from None


def _check_template(path: Path, key: str, template: str, known: set[str]) -> None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise SpecError(path, key, f"bad template: {exc}") from None
    for f in fields:
        root = re.split(r"[.\[]", f, maxsplit=1)[0]
        if not root:
            raise SpecError(path, key, "empty {} field: name a parameter, e.g. {lr}")
        if root not in known:
            raise SpecError(path, key, f"{{{root}}} is not a grid, fixed or built-in parameter")


def _check_script(path: Path, key: str, template: str, cwd: Path) -> None:
    """`python train_scrpt.py ...` would start every trial only for each to fail: a python program's script
    must exist (relative to the model's cwd, where the trial runs or which its folder mirrors). Only its first
    argument that is no option, ends in .py and has no {placeholder}; `-m`, `-c` and other programs are not
    checked."""
    try:
        args = shlex.split(template)
    except ValueError as exc:
        raise SpecError(path, key, f"cannot split into arguments: {exc}") from None
    script = _python_script(args)
    if script is None or "{" in script or not script.endswith(".py"):
        return
    file = (cwd / Path(script).expanduser()).resolve()
    if file.is_file():
        return
    scripts = [p.name for p in file.parent.glob("*.py")] if file.parent.is_dir() else []
    near = difflib.get_close_matches(file.name, scripts, n=1, cutoff=0.75)
    raise SpecError(path, key, f"no such file: {file}" + (f" (did you mean {near[0]}?)" if near else ""))


def _python_script(args: list[str]) -> str | None:
    """The script a python command line runs; None when it is no python, or runs a module, code or stdin."""
    if not args or not PYTHON_RE.match(Path(args[0]).name):
        return None
    rest = iter(args[1:])
    for arg in rest:
        if arg == "--":
            return next(rest, None)
        if arg == "-":  # the program comes on stdin
            return None
        if not arg.startswith("-"):
            return arg
        if arg.startswith("--"):
            continue
        for i, flag in enumerate(arg[1:], 1):  # short flags, maybe several in one: -uB, -Wignore, -um mod
            if flag in "cm":
                return None
            if flag in "WX":
                if i == len(arg) - 1:
                    next(rest, None)  # its value is the next argument
                break
    return None


def _regexes(path: Path, where: str, m: dict[str, Any], kind: str) -> tuple[str, ...]:
    r"""One pattern or a list; each needs named groups (the metric names). Single-quote them in TOML:
    'valid loss\s+(?P<valid_loss>[0-9.]+)' (a double-quoted "\s" is invalid TOML)."""
    if "metrics_regex" not in m:
        return ()
    key = f"{where}.metrics_regex"
    if kind != "command":
        raise SpecError(path, key, "only applies to command trainables")
    raw = m["metrics_regex"]
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for i, item in enumerate(items):
        k = f"{key}[{i}]" if isinstance(raw, list) else key
        rx = checks.string(path, k, item)
        try:
            compiled = re.compile(rx)
        except re.error as exc:
            raise SpecError(path, k, f"invalid regex: {exc}") from None
        if not compiled.groupindex:
            raise SpecError(path, k, "needs named groups, e.g. (?P<loss>[0-9.eE+-]+)")
        out.append(rx)
    return tuple(out)


def _axes(path: Path, where: str, grid: dict[str, Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for axis, values in grid.items():
        key = f"{where}.grid.{axis}"
        _param_name(path, key, axis)
        if not isinstance(values, list):
            raise SpecError(path, key, f"must be a list of values, e.g. [{checks.toml_repr(values)}]")
        if not values:
            raise SpecError(path, key, "axis is empty: give at least one value")
        for v in values:
            if not isinstance(v, (str, int, float, bool)):
                raise SpecError(path, key, f"values must be strings, numbers or booleans, not {v!r}")
        if len({checks.toml_repr(v) for v in values}) != len(values):
            raise SpecError(path, key, "repeats a value")
        out[axis] = list(values)
    return out


def _param_name(path: Path, key: str, name: str) -> None:
    if name in RESERVED:
        raise SpecError(path, key, f"{name!r} is set by gridwatch for every trial; pick another name")
    if not name.isidentifier():
        raise SpecError(path, key, f"{name!r} is not a valid parameter name (letters, digits, '_')")
