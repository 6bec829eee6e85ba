"""``python -m hopline`` runs the command line."""

from hopline.cli.main import run

run()
