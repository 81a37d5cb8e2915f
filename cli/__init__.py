"""The `dreambot` command: one dispatcher over each package's own sub-commands."""
