"""The search space of `rlhf sweep`: a small YAML file, one stage option per key.

    learning_rate: {log_uniform: [1e-5, 1e-3]}
    beta: {uniform: [0.05, 0.5]}
    max_steps: {int: [40, 160], step: 20}
    lora_r: {log_int: [4, 64]}
    loss_type: {choice: [sigmoid, ipo]}

Every key must be an option of the stage's config, and every range must fit the option's type, so
a typo fails here, naming the file, line and key, before any trial runs. Numbers such as `1e-5`
are accepted as written (YAML 1.1 would read them as strings).
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from core.aliases import unknown_hint
from core.config import ConfigError, UserError, apply_updates, yaml_problem

KINDS = ("uniform", "log_uniform", "int", "log_int", "choice")

# Where a trial reads and writes, and how it runs: set by the sweep, never searched.
NOT_SEARCHED = {"run", "out", "model", "sft", "data", "init", "reward", "resume", "device", "threads", "seed",
                "eos_token", "chat_template", "load_in_4bit", "check_data", "save_total_limit", "logging_steps",
                "ablations"}


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # one of KINDS
    low: float | int | None = None
    high: float | int | None = None
    step: int | None = None  # int only
    choices: tuple = ()
    where: str = ""  # file:line, for messages

    def contains(self, value: Any) -> bool:
        """Whether `value` (for example the stage's current setting) lies in this range."""
        if self.kind == "choice":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind in ("int", "log_int") and (int(value) != value or
                                                (self.step and (value - self.low) % self.step)):
            return False
        return self.low <= value <= self.high

    def describe(self) -> str:
        if self.kind == "choice":
            return f"{self.name}: one of {', '.join(map(str, self.choices))}"
        step = f" step {self.step}" if self.step else ""
        return f"{self.name}: {self.kind} {self.low}..{self.high}{step}"


def _number(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: key '{key}': range bound {value!r} is not a number")
    if isinstance(value, (int, float)):
        return value
    try:
        return float(str(value))
    except ValueError:
        raise ConfigError(f"{where}: key '{key}': range bound {value!r} is not a number") from None


def _base_type(tp: Any) -> set[type]:
    """The scalar types an option takes (float | str -> {float, str}; bool | None -> {bool})."""
    args = typing.get_args(tp) if typing.get_origin(tp) is not None else (tp,)
    return {a for a in args if a is not type(None)}


def _param(key: str, spec: Any, where: str, tp: Any) -> Param:
    if not isinstance(spec, dict) or len(set(spec) - {"step"}) != 1:
        raise ConfigError(f"{where}: key '{key}': give one of {', '.join(KINDS)}, for example "
                          f"{key}: {{uniform: [low, high]}}; got {spec!r}")
    kind = next(k for k in spec if k != "step")
    if kind not in KINDS:
        raise ConfigError(f"{where}: key '{key}': unknown range kind '{kind}' (known: {', '.join(KINDS)})")
    values, types = spec[kind], _base_type(tp)
    if "step" in spec and kind != "int":
        raise ConfigError(f"{where}: key '{key}': 'step' goes with int ranges only")
    if kind == "choice":
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: key '{key}': choice needs a non-empty list, got {values!r}")
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(f"{where}: key '{key}': choice lists a value twice")
        return Param(key, kind, choices=tuple(values), where=where)
    if not isinstance(values, list) or len(values) != 2:
        raise ConfigError(f"{where}: key '{key}': {kind} needs [low, high], got {values!r}")
    low, high = (_number(v, where, key) for v in values)
    if kind in ("int", "log_int"):
        if int not in types or bool in types:
            raise ConfigError(f"{where}: key '{key}' is not an integer option: use uniform or log_uniform")
        if low != int(low) or high != int(high):
            raise ConfigError(f"{where}: key '{key}': int bounds must be whole numbers, got {values!r}")
        low, high = int(low), int(high)
    elif float not in types:
        raise ConfigError(f"{where}: key '{key}' takes {' or '.join(sorted(t.__name__ for t in types))}, "
                          f"not a float range: use int, log_int or choice")
    if not low < high:
        raise ConfigError(f"{where}: key '{key}': the low end {low} must be below the high end {high}")
    if kind.startswith("log") and low <= 0:
        raise ConfigError(f"{where}: key '{key}': a log range must be above 0, got low {low}")
    step = spec.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 1
                             or (high - low) % step):
        raise ConfigError(f"{where}: key '{key}': step must be a whole number >= 1 that divides high - low, "
                          f"got {step!r}")
    return Param(key, kind, low, high, step, where=where)


def _lines(text: str) -> dict[str, int]:
    """Each top-level key's line number (1-based)."""
    node = yaml.compose(text)
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def load_space(path: str | Path, base: Any, check: Callable[[Any], None] | None = None) -> list[Param]:
    """The space in `path` for a stage whose config is `base` (a config dataclass instance); every
    range end and choice is checked against the option's type (core.config.apply_updates), and
    every text choice by the stage's own option check (`check`, its check_config), so a value the
    stage refuses (`loss_type: bogus`) stops the sweep before the trial that would draw it."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: search space file not found")
    if not path.is_file():
        raise ConfigError(f"{path}: a directory, not a search space file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        data = yaml.safe_load(text)
        lines = _lines(text)
    except yaml.YAMLError as e:
        raise ConfigError(yaml_problem(path, e)) from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: the search space must be a mapping of option: range, "
                          f"for example learning_rate: {{log_uniform: [1e-5, 1e-3]}}")
    fields = {f.name for f in dataclasses.fields(base)}
    hints = typing.get_type_hints(type(base))
    params = []
    for key, spec in data.items():
        where = f"{path}:{lines.get(str(key), 1)}"
        if key not in fields:
            raise ConfigError(f"{where}: unknown option '{key}' for {type(base).__name__}"
                              f"{unknown_hint(str(key), fields)}")
        if key in NOT_SEARCHED:
            raise ConfigError(f"{where}: option '{key}' says where or how a trial runs; the sweep sets it, "
                              f"it is not searched")
        p = _param(key, spec, where, hints[key])
        for value in p.choices or (p.low, p.high):
            one = apply_updates(base, {key: value}, where)  # the option's own type check, naming the place
            if check is not None and isinstance(value, str):
                try:
                    check(one)
                except UserError as e:
                    if key in str(e):  # about this option, not another the space also searches
                        raise ConfigError(f"{where}: {e}") from None
        params.append(p)
    return params


def suggest(trial, params: list[Param]) -> dict[str, Any]:
    """One trial's values (an optuna.Trial)."""
    out = {}
    for p in params:
        if p.kind == "choice":
            out[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif p.kind in ("int", "log_int"):
            out[p.name] = trial.suggest_int(p.name, p.low, p.high, step=p.step or 1, log=p.kind == "log_int")
        else:
            out[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.kind == "log_uniform")
    return out
