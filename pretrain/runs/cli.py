"""How every entry point ends: a result, or one line saying what went wrong and what to do.

`guarded(main)` turns the errors that describe bad input or a conflicting folder into "error: ..."
(exit 1), a stop for a preemption signal after its checkpoint into "preempted: ..." (exit 75, `preempt`),
and Ctrl-C into "interrupted ..." (exit 130); anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys

from pretrain.runs.preempt import EXIT_PREEMPTED, Preempted


class InputError(ValueError):
    """Bad input or a conflicting folder; the message names the file/key and what to do (a config error, a run
    conflict). `guarded` prints it as one line."""


def guarded(main, *errors: type[BaseException], resume_hint: str = "rerun the same command to resume") -> int:
    """Run `main()` and return its exit code; `errors` adds exception types that carry a user-facing message."""
    try:
        return main()
    except KeyboardInterrupt:
        print(f"\ninterrupted (Ctrl-C); {resume_hint}", file=sys.stderr)
        return 130
    except Preempted as e:
        print(f"preempted: {e}", file=sys.stderr)
        return EXIT_PREEMPTED
    except (InputError, OSError, FloatingPointError, *errors) as e:
        kind = "" if isinstance(e, (ValueError, OSError)) else f"{type(e).__name__}: "  # input errors speak for themselves
        print(f"error: {kind}{e}", file=sys.stderr)
        return 1


def number(kind=int, low=None, high=None, low_open: bool = False):
    """An argparse `type` that accepts a `kind` (int/float) within [low, high] (`low_open`: low excluded);
    argparse then stops with "argument --x: ... must be ..." naming the option and the value."""
    import argparse

    want = ("an integer" if kind is int else "a number") + (f" {'>' if low_open else '>='} {low}" if low is not None else "") \
        + (f" and <= {high}" if high is not None else "")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {want}") from None
        if (low is not None and (value <= low if low_open else value < low)) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {want}")
        return value

    parse.__name__ = kind.__name__
    return parse
