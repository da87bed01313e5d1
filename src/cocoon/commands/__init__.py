"""Sub-commands of the `cocoon` CLI that are more than starting a role."""
