"""Every ```python block of the README and of the documentation site (``docs/``) runs,
against a real Redis, under its own prefix; and the README's links into ``docs/`` resolve
(``mkdocs build --strict`` in ``scripts/test`` checks the links between the pages)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)


EXAMPLES = [(page.relative_to(ROOT).as_posix(), number, block)
            for page in PAGES for number, block in enumerate(_blocks(page), start=1)]

RUNNER = """
import ast, asyncio, sys
source = sys.stdin.read()
code = compile(source, sys.argv[1], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
async def main():
    result = eval(code, {"__name__": "__main__"})
    if asyncio.iscoroutine(result):
        await result
asyncio.run(main())
"""


def test_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 10
    assert any(page == "README.md" for page, _, _ in EXAMPLES)


@pytest.mark.parametrize(("page", "number", "block"),
                         [pytest.param(*example, id=f"{example[0]}-{example[1]}")
                          for example in EXAMPLES])
def test_readme_example_runs(page: str, number: int, block: str, redis_url: str, prefix: str,
                             redis_client: object, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NLQ_")}
    env.update(REDIS_URL=redis_url, NLQ_KEY_PREFIX=prefix, NLQ_STATE_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", RUNNER, f"{page} example {number}"],
                            input=block, text=True, capture_output=True, env=env,
                            cwd=tmp_path, timeout=60, check=False)
    assert result.returncode == 0, f"{page} example {number} failed:\n{block}\n" \
                                   f"{result.stderr}"


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub and MkDocs both write it for plain words."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = [link for link in re.findall(r"\]\(([^)\s]+)\)", readme) if "://" not in link]
    assert any(link.startswith("docs/") for link in links)
    broken = []
    for link in links:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), re.M) \
            if target.is_file() else []
        if not target.is_file() or (anchor and anchor not in {_slug(h) for h in headings}):
            broken.append(link)
    assert broken == []
