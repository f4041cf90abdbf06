"""Mutation check: plant each known fault in a scratch copy and show which tests of
the default run catch it.

    python .ci/mutation_check.py                 # every mutant
    python .ci/mutation_check.py heun_weights    # one (or several) by name
    python .ci/mutation_check.py --list

Each mutant replaces one exact piece of source text (which must occur exactly once)
in a copy of the working tree, then runs the test files listed for it with the
default options (`-m 'not slow'` from pyproject). A mutant is *killed* when at
least one of those tests fails; the script prints the failing test ids and exits 1
if any mutant survives. The test files named per mutant are where the catching
tests live; all of them are in the default run, so the default run catches every
killed mutant.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    fault: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = (
    Mutant(
        "costate_at_x_next",
        "the costate recursion uses the Jacobian at x_{k+1} instead of x_k",
        "flow/_shooting.py",
        "_, out = jax.lax.scan(body, lam_last, (xs, U, sh.steps), reverse=True)",
        "xs_next = jnp.concatenate([xs[1:], xN[None]], axis=0)\n"
        "    _, out = jax.lax.scan(body, lam_last, (xs_next, U, sh.steps), reverse=True)",
        ("tests/test_shooting.py",),
    ),
    Mutant(
        "heun_weights",
        "Heun's second stage weighted 0.4/0.6 instead of 0.5/0.5",
        "flow/_schemes.py",
        "return x + 0.5 * h * (k1 + k2)",
        "return x + h * (0.4 * k1 + 0.6 * k2)",
        ("tests/test_shooting.py", "tests/test_schemes.py"),
    ),
    Mutant(
        "rk4_adjoint_stage",
        "RK4's adjoint missing one stage term (stage 3 in the costate)",
        "flow/_schemes.py",
        "return lam + X1 + X2 + X3 + X4, U1 + U2 + U3 + U4",
        "return lam + X1 + X2 + X4, U1 + U2 + U3 + U4",
        ("tests/test_shooting.py",),
    ),
    Mutant(
        "rk4_adjoint_gradient_stage",
        "RK4's adjoint missing one stage term (stage 3 in dE^N/du)",
        "flow/_schemes.py",
        "return lam + X1 + X2 + X3 + X4, U1 + U2 + U3 + U4",
        "return lam + X1 + X2 + X3 + X4, U1 + U2 + U4",
        ("tests/test_shooting.py",),
    ),
    Mutant(
        "hamiltonian_metric_h_next",
        "the Hamiltonian metric uses h_{k+1} instead of h_k (non-uniform grids)",
        "flow/_metrics.py",
        "return jnp.broadcast_to(shooting.steps[:, None], shooting.control_shape)",
        "h = jnp.concatenate([shooting.steps[1:], shooting.steps[-1:]])\n"
        "        return jnp.broadcast_to(h[:, None], shooting.control_shape)",
        ("tests/test_metrics.py",),
    ),
    Mutant(
        "euler_bound_2_02",
        "euler_bound returns 2.02/lambda_max instead of 2/lambda_max",
        "stability/_euler.py",
        "bounds = -2.0 * re / np.abs(values) ** 2",
        "bounds = -2.02 * re / np.abs(values) ** 2",
        ("tests/test_stability_replay.py", "tests/test_stability_analyze.py"),
    ),
    Mutant(
        "divergence_check_late",
        "descent's divergence-factor check one iteration late",
        "flow/_descent.py",
        "diverged = ~finite | (gn > limit)",
        'diverged = ~finite | (residuals(carry["g"])[0] > limit)',
        ("tests/test_descent.py",),
    ),
)


def _copy_tree(dest: Path) -> None:
    """The working tree (tracked and untracked, not ignored) copied to `dest`."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in files:
        if not raw:
            continue
        rel = raw.decode()
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def run(mutant: Mutant, python: str) -> tuple[list[str], float]:
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
        dest = Path(tmp)
        _copy_tree(dest)
        target = dest / mutant.path
        text = target.read_text()
        count = text.count(mutant.old)
        if count != 1:
            raise SystemExit(
                f"{mutant.name}: the text to replace occurs {count} times in {mutant.path}"
            )
        target.write_text(text.replace(mutant.old, mutant.new))
        env = dict(os.environ, PYTHONPATH=str(dest))
        where = subprocess.run(
            [python, "-c", "import flow; print(flow.__file__)"],
            cwd=dest,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if not where.startswith(str(dest)):
            raise SystemExit(f"{mutant.name}: imported flow from {where}, not the scratch copy")
        start = time.perf_counter()
        proc = subprocess.run(
            [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tb=no", "-rf"]
            + ["--hypothesis-profile=mutation", "-n", "0"]
            + list(mutant.tests),
            cwd=dest,
            env=env,
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - start
        failed = re.findall(r"^FAILED (\S+)", proc.stdout, flags=re.MULTILINE)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"{mutant.name}: pytest exited {proc.returncode}\n{proc.stdout}")
        return failed, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to test with")
    args = parser.parse_args()
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:28s} {m.fault}")
        return 0
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    unknown = set(args.names) - {m.name for m in MUTANTS}
    if unknown:
        parser.error(f"unknown mutants {sorted(unknown)}; see --list")
    survivors = []
    for m in chosen:
        failed, elapsed = run(m, args.python)
        verdict = f"killed by {len(failed)} test(s)" if failed else "SURVIVED"
        print(f"## {m.name}: {m.fault}\n   {verdict} ({elapsed:.0f} s, {' '.join(m.tests)})")
        for test in failed:
            print(f"   - {test}")
        if not failed:
            survivors.append(m.name)
        sys.stdout.flush()
    if survivors:
        print(f"survivors: {', '.join(survivors)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
