"""`python -m bot`: the same as `dreambot run` (bot plus worker; token from DISCORD_TOKEN)."""

import sys

from cli.main import main

sys.exit(main(["run", *sys.argv[1:]]))
