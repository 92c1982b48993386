#!/usr/bin/env python
"""`python tools/run_transfer.py --help`; the same command as installed: `hier-aug-transfer` (transfer.commands.run_transfer)."""
import sys

from transfer.commands.run_transfer import main

if __name__ == "__main__":
    sys.exit(main())
