"""The report's figures drawn in a second Python process, started before the analysis.

Drawing the three report figures takes longer than the analysis itself once JAX's
compilation cache is warm, and most of it is matplotlib: importing it, loading fonts,
laying out text, embedding the TrueType subsets in the PDFs. `gradflow analyze` starts
this process first thing (gradflow/_entry.py, before its own imports of JAX), so the
imports and a warm-up drawing run on the machine's second core while the analysis
runs on the first; the finished results document then goes to the process, which
forks one child per figure (up to one per core).

The protocol is one exchange of pickles over the process' stdin and stdout:
`(document, out)` in, `("ok", entries)` or `("error", traceback text)` out.

`draw` uses the process when one was started
(`prestart`) and is still healthy; otherwise,
and after any failure of it, it draws in the calling process, so that an error in a
figure surfaces there with its usual traceback. Python callers of
`gradflow.run_analysis` draw in their own process unless they call `prestart()`.
"""

from __future__ import annotations

import atexit
import os
import pickle
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


#: How long `draw` waits for the process' answer, in seconds (it draws in the
#: calling process after that).
TIMEOUT_S = 120.0

_prestarted: subprocess.Popen[bytes] | None = None


def prestart() -> None:
    """Start the figures' process now (once per process; a no-op where one runs)."""
    global _prestarted
    if _prestarted is not None:
        return
    try:
        _prestarted = subprocess.Popen(
            # -P: not the working folder first on sys.path, where a user's own
            # `figures` or `flow` would shadow ours
            [sys.executable, "-P", "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError:  # no process to be had: draw in this one
        return
    atexit.register(_stop, _prestarted)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def draw(document: dict[str, Any], out: Path) -> list[dict[str, Any]]:
    """The report figures of `document` drawn into `out` (`figures.report.draw`'s
    entries): in the prestarted process where there is one, else here."""
    global _prestarted
    proc, _prestarted = _prestarted, None
    if proc is not None:
        try:
            kind, value = _exchange(proc, (document, str(Path(out).resolve())))
        except Exception as e:  # it died, hung or answered garbage
            _stop(proc)
            warnings.warn(
                f"the figures' process failed ({type(e).__name__}: {e}); drawing here",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            if kind == "ok":
                return value
            # an error while drawing: drawn again below, where it raises as usual
    from figures import report

    return report.draw(document, out)


def _exchange(proc: subprocess.Popen[bytes], message: Any) -> Any:
    """Send `message` to `proc` and read its answer to the end of its stdout (which it
    closes when done), without waiting for it to exit; both in a thread, so that a
    process that stops reading or answering costs at most `TIMEOUT_S`."""
    stdin, stdout = proc.stdin, proc.stdout
    assert stdin is not None and stdout is not None
    answer: list[bytes] = []
    failed: list[BaseException] = []

    def talk() -> None:
        try:
            stdin.write(pickle.dumps(message))
            stdin.close()
            answer.append(stdout.read())
        except BaseException as e:  # a broken pipe: it died
            failed.append(e)

    talker = threading.Thread(target=talk, daemon=True, name="gradflow-figures")
    talker.start()
    talker.join(TIMEOUT_S)
    if failed:
        raise failed[0]
    if talker.is_alive() or not answer:
        raise TimeoutError(f"no answer within {TIMEOUT_S:g} s")
    return pickle.loads(answer[0])


def _draw_forked(parts: Sequence[Callable[..., Any]], document: Any, out: Path) -> list[Any]:
    """`figures.report.draw`, with each figure in a child forked from this process
    (one per core, up to one per figure). Forking is safe here: this process has
    started no thread, and JAX, imported by `figures`, has not started its runtime
    (it warns at a fork once it has, which is why the command's own process cannot
    do this)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    processes = min(len(parts), os.cpu_count() or 1)
    if processes > 1 and hasattr(os, "fork"):
        forked = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(processes, mp_context=forked) as pool:
            futures = [pool.submit(part, document, out) for part in parts]
            entries = [future.result() for future in futures]
    else:
        entries = [part(document, out) for part in parts]
    return [e for e in entries if e is not None]


def _serve() -> int:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    from figures import report

    report.warm_up()
    try:
        document, out = pickle.load(stdin)
    except EOFError:  # the command ended before its analysis did
        return 0
    try:
        answer = ("ok", _draw_forked(report.REPORT_FIGURES, document, Path(out)))
    except BaseException:
        import traceback

        answer = ("error", traceback.format_exc())
    stdout.write(pickle.dumps(answer))
    stdout.flush()
    stdout.close()  # the answer is complete: the command reads to this end of file
    return 0


if __name__ == "__main__":
    code = _serve()
    # nothing left to write or to clean up: skip the interpreter's teardown (a few
    # tenths of a second with JAX and matplotlib loaded), which the command would
    # otherwise wait for
    os._exit(code)
