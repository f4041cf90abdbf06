"""A declarative study: the grid of problems, sizes, schemes, metrics, steps and
starts that [`sweep`][gradflow.sweep] runs, from Python or from a TOML file."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import math
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


OUTCOMES = {
    "descent": "the discrete algorithm from each start at each step: status, reason, "
    "iterations, final cost and residuals (always computed: it makes the rows)",
    "equilibrium": "the equilibrium found from U = 0: its status, cost and residual",
    "spectrum": "the ends of the spectrum of J = -M^-1 Hess E^N at the equilibrium "
    "(mu_min, mu_max) and its classification",
    "euler_bound": "forward Euler's bound alpha_max at the equilibrium, alpha_opt and "
    "the predicted rate there",
    "tolerance": "Theorem 5.14 at the descent's end: the gradient residual eps, the "
    "Hamiltonian residual and eps / h_min, the Hamiltonian residual it guarantees",
    "flow": "the gradient flow from each start: status, final flow time, steps",
    "basin": "the fraction of the starts that converged at each step",
}
"""The outcomes a [`Study`][gradflow.Study] may compute per configuration (its
`compute`), with what each adds to the table of [`sweep`][gradflow.sweep]."""

_NEEDS_EQUILIBRIUM = {"equilibrium", "spectrum", "euler_bound"}


@dataclasses.dataclass(frozen=True)
class StepGrid:
    r"""The steps of a study: explicit `values`, or `num` points from `start` to
    `stop` (`spacing` `"linear"` or `"log"`); with `relative_to="alpha_max"` every
    value is a multiple of each configuration's forward-Euler bound $\alpha_{\max}$
    (so that one grid crosses the stability boundary at every N).

    **Raises:** `ValueError` naming the field: no values, a non-positive or
    non-finite value, `num` < 1, `stop` < `start`, an unknown `spacing` or
    `relative_to`."""

    values: Sequence[float | int] | None = None
    start: float | int | None = None
    stop: float | int | None = None
    num: int | None = None
    spacing: str = "linear"
    relative_to: str | None = None

    def __post_init__(self) -> None:
        if self.relative_to not in (None, "alpha_max"):
            raise ValueError(
                f"`steps.relative_to` must be 'alpha_max' or absent; got {self.relative_to!r}."
            )
        if self.spacing not in ("linear", "log"):
            raise ValueError(f"`steps.spacing` must be 'linear' or 'log'; got {self.spacing!r}.")
        if self.values is not None:
            if self.start is not None or self.stop is not None or self.num is not None:
                raise ValueError("`steps`: give either a list of values or start/stop/num.")
            values = tuple(_positive(v, "steps") for v in self.values)
            if not values:
                raise ValueError("`steps` must hold at least one step.")
            object.__setattr__(self, "values", values)
            return
        if self.start is None or self.stop is None or self.num is None:
            raise ValueError("`steps` needs `start`, `stop` and `num` (or a list of values).")
        object.__setattr__(self, "start", _positive(self.start, "steps.start"))
        object.__setattr__(self, "stop", _positive(self.stop, "steps.stop"))
        if isinstance(self.num, bool) or not isinstance(self.num, int) or self.num < 1:
            raise ValueError(f"`steps.num` must be an integer >= 1; got {self.num!r}.")
        if self.stop < self.start:
            raise ValueError(
                f"`steps.stop` must be >= `steps.start`; got {self.start} and {self.stop}."
            )

    @classmethod
    def parse(cls, value: Any) -> StepGrid:
        """A `StepGrid` from a list of numbers, a single number, a mapping with the
        fields above (a TOML table), or a `StepGrid`."""
        if isinstance(value, StepGrid):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {f.name for f in dataclasses.fields(cls)}
            if unknown:
                raise ValueError(f"`steps` has unknown keys {sorted(unknown)}.")
            fields = dict(value)
            if "values" in fields:
                fields["values"] = tuple(fields["values"])
            return cls(**fields)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return cls(values=(float(value),))
        if isinstance(value, Sequence) and not isinstance(value, str):
            return cls(values=tuple(value))
        raise TypeError(
            f"`steps` must be a list of steps or a table {{start, stop, num}}; got {value!r}."
        )

    def multipliers(self) -> tuple[float, ...]:
        """The grid's values (absolute steps, or multiples of alpha_max)."""
        if self.values is not None:
            return self.values
        import numpy as np

        make = np.geomspace if self.spacing == "log" else np.linspace
        return tuple(float(v) for v in make(self.start, self.stop, self.num))

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"`{name}` must hold numbers; got {value!r}.")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must hold finite positive numbers; got {value!r}.")
    return float(value)


def _names(value: Any, name: str, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value)
    if not items or not all(isinstance(v, str) and v for v in items):
        raise ValueError(f"`{name}` must be a non-empty list of names; got {value!r}.")
    if allowed is not None:
        bad = [v for v in items if v not in allowed]
        if bad:
            raise ValueError(f"`{name}`: unknown {bad}; expected some of {sorted(allowed)}.")
    if len(set(items)) != len(items):
        raise ValueError(f"`{name}` lists a name twice: {list(items)}.")
    return items


@dataclasses.dataclass(frozen=True)
class Configuration:
    """One point of a study's grid of (problem, N, scheme, metric): the unit that runs
    in one process and is stored (and resumed) as one part."""

    problem: str
    N: int
    scheme: str
    metric: str

    def key(self, study: Study) -> str:
        """A hash of this configuration, the study's settings that change its rows,
        and the package version: the name of its stored part."""
        payload = {
            "configuration": dataclasses.asdict(self),
            "settings": study.settings(),
            "version": importlib.metadata.version("gradient-flow-analyzer"),
        }
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclasses.dataclass(frozen=True)
class Study:
    r"""A declarative study for [`sweep`][gradflow.sweep].

    **Fields:**

    - `problems`: problem specs (a built-in name, `path/to/file.py:object` or
      `module:object`, as for `gradflow analyze --problem`);
    - `N`: the grid sizes; `schemes`: `"euler"`, `"heun"`, `"rk4"`; `metrics`: metric
      names (`"identity"`, `"hamiltonian"`, `"newton"`, ...);
    - `steps`: a [`StepGrid`][gradflow.StepGrid] (or what `StepGrid.parse` takes: a
      list of steps, or a table `{start, stop, num, spacing, relative_to}`);
    - `tol`, `stop_on`, `max_steps`: the stopping rule of every descent (and flow);
    - `starts`, `seed`, `spread`: the initial controls, $U_0^{(s)} = $ `spread`
      $\cdot\,\xi^{(s)}$ with standard normal $\xi$ drawn from `seed` (the same draws
      for every configuration of a given N and control dimension); `starts=1` with
      `spread=0` starts from $U = 0$, as `gradflow analyze` does;
    - `compute`: outcome names (keys of `gradflow.OUTCOMES`; `"descent"` is always
      computed).

    A configuration is one (problem, N, scheme, metric); its steps and starts run in
    one compiled, vmapped call.

    **Raises:** `ValueError`/`TypeError` naming the field for a bad value.
    """

    # Annotated with what the constructor accepts (validated and normalised in
    # __post_init__: tuples of names and sizes, a StepGrid, floats).
    problems: Sequence[str]
    N: Sequence[int] | int
    steps: StepGrid | Sequence[float] | dict[str, Any] | float
    schemes: Sequence[str] = ("euler",)
    metrics: Sequence[str] = ("hamiltonian",)
    tol: float | int = 1e-8
    stop_on: str = "hamiltonian"
    max_steps: int = 5000
    starts: int = 1
    seed: int = 0
    spread: float | int = 0.0
    compute: Sequence[str] = ("descent", "euler_bound")

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "problems", _names(self.problems, "problems"))
        Ns = (self.N,) if isinstance(self.N, int) else tuple(self.N)
        if not Ns or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in Ns):
            raise ValueError(f"`N` must be a non-empty list of integers >= 1; got {self.N!r}.")
        if len(set(Ns)) != len(Ns):
            raise ValueError(f"`N` lists a size twice: {list(Ns)}.")
        set_(self, "N", Ns)
        set_(self, "schemes", _names(self.schemes, "schemes", ("euler", "heun", "rk4")))
        set_(self, "metrics", _names(self.metrics, "metrics"))
        set_(self, "steps", StepGrid.parse(self.steps))
        set_(self, "tol", _positive(self.tol, "tol"))
        if self.stop_on not in ("hamiltonian", "gradient"):
            raise ValueError(
                f"`stop_on` must be 'hamiltonian' or 'gradient'; got {self.stop_on!r}."
            )
        for name in ("max_steps", "starts"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"`{name}` must be an integer >= 1; got {v!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"`seed` must be an integer >= 0; got {self.seed!r}.")
        if isinstance(self.spread, bool) or not isinstance(self.spread, int | float):
            raise TypeError(f"`spread` must be a number; got {self.spread!r}.")
        if not (math.isfinite(self.spread) and self.spread >= 0):
            raise ValueError(f"`spread` must be finite and >= 0; got {self.spread!r}.")
        set_(self, "spread", float(self.spread))
        compute = _names(self.compute, "compute", tuple(OUTCOMES))
        if "descent" not in compute:
            compute = ("descent", *compute)
        set_(self, "compute", compute)

    @classmethod
    def from_toml(cls, path: str | Path) -> Study:
        """The study of a TOML file whose top-level keys are the fields above, with
        `steps` a list or a table (`[steps]` with `start`, `stop`, `num`, and
        optionally `spacing` and `relative_to = "alpha_max"`).

        **Raises:** `FileNotFoundError`; `ValueError` naming the file for invalid TOML
        or an unknown key, and naming the field for a bad value."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: not valid TOML: {e}") from e
        return cls.from_dict(data, where=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "study") -> Study:
        """The study of a mapping with the fields above (what `to_dict` returns)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; expected {sorted(known)}.")
        missing = {"problems", "N", "steps"} - set(data)
        if missing:
            raise ValueError(f"{where}: missing keys {sorted(missing)}.")
        return cls(**data)

    def settings(self) -> dict[str, Any]:
        """The settings that every configuration's rows depend on (its key's input)."""
        return {
            "steps": self.steps.to_dict(),
            "tol": self.tol,
            "stop_on": self.stop_on,
            "max_steps": self.max_steps,
            "starts": self.starts,
            "seed": self.seed,
            "spread": self.spread,
            "compute": list(self.compute),
        }

    def to_dict(self) -> dict[str, Any]:
        """The study as plain data (TOML/JSON-ready; `from_dict` reads it back)."""
        return {
            "problems": list(self.problems),
            "N": list(self.N),
            "schemes": list(self.schemes),
            "metrics": list(self.metrics),
            **self.settings(),
        }

    def configurations(self) -> Iterator[Configuration]:
        """Every (problem, N, scheme, metric), problems outermost."""
        for problem in self.problems:
            for N in self.N:
                for scheme in self.schemes:
                    for metric in self.metrics:
                        yield Configuration(problem, N, scheme, metric)

    @property
    def needs_equilibrium(self) -> bool:
        """Whether each configuration needs its equilibrium (for the outcomes asked,
        or for steps relative to alpha_max)."""
        return bool(_NEEDS_EQUILIBRIUM & set(self.compute)) or self.steps.relative_to is not None
