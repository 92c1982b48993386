#!/usr/bin/env python
"""`python tools/extract_backbone.py --help`; the same command as installed: `hier-aug-extract` (transfer.commands.extract_backbone)."""
import sys

from transfer.commands.extract_backbone import main

if __name__ == "__main__":
    sys.exit(main())
