"""Tool block: records why the job needs a human."""

from __future__ import annotations

from pathlib import Path

import pytest

from crewboard.runner.tools.base import ToolError
from crewboard.runner.tools.block import TOOL
from tests.support.runner import tool_context


def test_the_first_reason_is_kept(tmp_path: Path) -> None:
    ctx = tool_context(tmp_path)
    assert TOOL.run({"reason": "need the API spec"}, ctx) == "the job is blocked: need the API spec"
    TOOL.run({"reason": "second thoughts"}, ctx)
    assert ctx.block_reason == "need the API spec"


def test_an_empty_reason_is_refused(tmp_path: Path) -> None:
    ctx = tool_context(tmp_path)
    with pytest.raises(ToolError, match="say why"):
        TOOL.run({"reason": "  "}, ctx)
    assert ctx.block_reason is None
