"""The `gradflow` console script: for `analyze`, the figures' process starts before
this one imports JAX (gradflow/_figure_worker.py), then the command line runs
(`gradflow._cli.main`)."""

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `gradflow` console script; returns the exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["analyze"] and "--help" not in args and "-h" not in args:
        from . import _figure_worker

        _figure_worker.prestart()
    from ._cli import main as cli

    return cli(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
