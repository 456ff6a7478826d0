"""Subcommands of the ``hybridformer`` CLI, one module each."""
