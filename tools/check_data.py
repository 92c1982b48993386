#!/usr/bin/env python
"""`python tools/check_data.py --help`; the same command as installed: `hier-aug-check-data` (transfer.commands.check_data)."""
import sys

from transfer.commands.check_data import main

if __name__ == "__main__":
    sys.exit(main())
