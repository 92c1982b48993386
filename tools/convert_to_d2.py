#!/usr/bin/env python
"""`python tools/convert_to_d2.py --help`; the same command as installed: `hier-aug-convert-d2` (transfer.commands.convert_to_d2)."""
import sys

from transfer.commands.convert_to_d2 import main

if __name__ == "__main__":
    sys.exit(main())
