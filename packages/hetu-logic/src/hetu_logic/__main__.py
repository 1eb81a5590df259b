"""``python -m hetu_logic`` runs the ``hetu-logic`` command."""

from hetu_logic.cli import main

main()
