"""The command-line entry points of the transfer layer (installed as hier-aug-transfer, hier-aug-check-data,
hier-aug-convert-d2, hier-aug-extract; `tools/*.py` in a checkout call the same `main`)."""
