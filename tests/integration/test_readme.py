"""Every ```python block of the README runs, against a real Redis, under its own prefix."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)

RUNNER = """
import ast, asyncio, sys
source = sys.stdin.read()
code = compile(source, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
async def main():
    result = eval(code, {"__name__": "__main__"})
    if asyncio.iscoroutine(result):
        await result
asyncio.run(main())
"""


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, redis_url: str, prefix: str, redis_client: object,
                             tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NLQ_")}
    env.update(REDIS_URL=redis_url, NLQ_KEY_PREFIX=prefix, NLQ_STATE_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", RUNNER], input=BLOCKS[index], text=True,
                            capture_output=True, env=env, cwd=tmp_path, timeout=60,
                            check=False)
    assert result.returncode == 0, f"README example {index + 1} failed:\n{BLOCKS[index]}\n" \
                                   f"{result.stderr}"
