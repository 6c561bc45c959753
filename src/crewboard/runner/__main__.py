"""Entry point: ``python -m crewboard.runner`` (spawned by the launcher, never by hand)."""

from crewboard.runner.main import main

main()
