"""The ``hopline`` command line (typer + rich).

:mod:`hopline.cli.main` builds the command tree and enforces the contract of
shared docs: ``--json`` prints exactly one JSON document on stdout, errors are
one line on stderr with exit code 2 (bad usage or input) or 1 (failure at run
time), and no traceback is shown unless ``--debug`` is given.
"""
