#!/usr/bin/env python
"""`python tools/make_demo_data.py --help`; the same command as installed: `hier-aug-demo-data` (benchmarks.make_demo_data)."""
import sys

from benchmarks.make_demo_data import main

if __name__ == "__main__":
    sys.exit(main())
