"""What a tool can reach from inside a real run: a runner subprocess on the
offline model runs the shell and file tools, and they must not find the API key
(in their environment, in /proc/<runner>/environ or the runner's memory), nor
the data home's board.db and secret_key, nor another run's workspace."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import trio

from crewboard.processes import spawn_runner, stop_process
from crewboard.sessionlog import read_records
from tests.support import need
from tests.support.runner import offline_spec

KEY_HEAD, KEY_TAIL = "sk-isolation-", "7f3a9c1e5b"
KEY = KEY_HEAD + KEY_TAIL

# Runs inside the tool: looks for the key in every other process's environment
# and readable memory. It holds the key only as two halves joined at run time.
SCAN = f"""
import os, re
key = ({KEY_HEAD!r} + {KEY_TAIL!r}).encode()
me = os.getpid()
found, denied, scanned = [], 0, 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) == me:
        continue
    try:
        if key in open(f"/proc/{{pid}}/environ", "rb").read():
            found.append(pid + ":environ")
    except OSError:
        denied += 1
    try:
        with open(f"/proc/{{pid}}/maps") as maps, open(f"/proc/{{pid}}/mem", "rb", 0) as mem:
            scanned += 1
            for line in maps:
                m = re.match(r"([0-9a-f]+)-([0-9a-f]+) r", line)
                if not m:
                    continue
                start, end = int(m[1], 16), int(m[2], 16)
                if end - start > 64 << 20:
                    continue
                try:
                    mem.seek(start)
                    if key in mem.read(end - start):
                        found.append(pid + ":mem")
                except (OSError, ValueError, OverflowError):
                    pass
    except OSError:
        denied += 1
print("FOUND" if found else "CLEAN", found, "denied", denied, "scanned", scanned)
"""


async def run(spec: dict[str, Any]) -> list[dict[str, Any]]:
    proc = await spawn_runner(spec)
    try:
        with trio.fail_after(30):
            await proc.wait()
    finally:
        await stop_process(proc, 1.0)
        await proc.stdin.aclose()  # type: ignore[union-attr]
    return read_records(spec["logPath"])


def tool_results(records: list[dict[str, Any]]) -> list[str]:
    return [r["result"] for r in records if r["type"] == "agent_tool_end"]


def spec_with_key(home: Path, prompt: str) -> dict[str, Any]:
    model = {"spec": "offline:scripted", "provider": "offline", "name": "scripted", "apiKey": KEY}
    return offline_spec(home, prompt, model=model, limits={"allowShell": True, "toolTimeoutS": 20})


async def test_a_tool_cannot_find_the_api_key_anywhere(tmp_path: Path) -> None:
    need(Path("/usr/bin/python3").exists(), "a system python3 to scan memory with")
    prompt = "\n".join(
        [
            "/tool write_file " + json.dumps({"path": "scan.py", "content": SCAN}),
            "/tool shell " + json.dumps({"command": "env; /usr/bin/python3 scan.py"}),
        ]
    )
    spec = spec_with_key(tmp_path, prompt)
    records = await run(spec)
    assert records[-1]["type"] == "final_result", records[-1]
    shell_output = tool_results(records)[-1]
    assert "CLEAN" in shell_output, shell_output
    assert "OPENAI_API_KEY" not in shell_output and KEY not in shell_output
    assert KEY not in Path(spec["logPath"]).read_text()


async def test_a_tool_cannot_read_the_data_home_or_another_run(tmp_path: Path) -> None:
    need(shutil.which("bwrap"), "bubblewrap (bwrap) is not installed")
    (tmp_path / "board.db").write_text("TABLE-ROWS")
    (tmp_path / "secret_key").write_text("SIGNING-KEY")
    other = tmp_path / "workspaces" / "2"
    other.mkdir(parents=True)
    (other / "notes.txt").write_text("OTHER-RUN")
    command = (
        f"cat {tmp_path}/board.db {tmp_path}/secret_key {other}/notes.txt; "
        f"ls {tmp_path} {tmp_path}/workspaces; echo wrote > {tmp_path}/planted; echo done"
    )
    prompt = "\n".join(
        [
            "/tool shell " + json.dumps({"command": command}),
            "/tool read_file " + json.dumps({"path": "../2/notes.txt"}),
        ]
    )
    records = await run(spec_with_key(tmp_path, prompt))
    results = "\n".join(tool_results(records))
    for secret in ("TABLE-ROWS", "SIGNING-KEY", "OTHER-RUN"):
        assert secret not in results
    assert "'..' is not allowed" in results
    assert not (tmp_path / "planted").exists()
    assert records[-1]["type"] == "final_result"
