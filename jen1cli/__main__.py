"""`python -m jen1cli` runs the CLI (what `accelerate launch -m jen1cli` needs)."""

from jen1cli.cli import main

main()
