"""``python -m cfm_core.cli`` (what ``accelerate launch -m cfm_core.cli`` runs): the ``cfm`` command."""

from cfm_core.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
