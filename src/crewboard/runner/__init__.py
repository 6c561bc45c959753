"""One agent run in its own process: ``python -m crewboard.runner``.

The runner reads its JSON spec from the first line of stdin, calls the model
and the agent's tools in a loop, appends every step to one JSONL session log,
saves artifact files, and exits with a code that says how the run ended (see
:mod:`crewboard.runner.main`). It imports nothing from the board, the web or
the supervisor; only the log format is shared.

This package's ``__init__`` stays empty of imports so that starting a runner
(and importing the tool registry from the web process) stays cheap.
"""
