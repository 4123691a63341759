"""The Redis ACL that newsletter-queue needs, in one place (documented in docs/scaling.md).

A user limited to the key prefix (``~{prefix}:*``), with no pub/sub channels and only
these commands:

- ``ACL_COMMANDS``: every command the system runs — BullMQ's Lua scripts of the pinned
  ``bullmq`` package (Redis checks the ACL for commands called inside scripts too), our
  own scripts (ledger, rate limits, circuit breakers), and the direct calls of the
  producer, workers, monitor and dev tools. ``AUTH``/``HELLO``/``QUIT`` need no grant.
- ``CLUSTER_COMMANDS``: what redis-py's cluster client adds (slot map, key positions).
- ``TEST_ONLY_COMMANDS``: what the test fixtures add (``SCAN`` to delete a test's keys).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

SCRIPTING = ["eval", "evalsha", "script|exists", "script|load", "multi", "exec", "watch",
             "unwatch"]
SERVER = ["bzpopmin", "client|list", "client|setname", "info", "ping"]
KEYS = ["del", "exists", "expire", "get", "incr", "incrby", "persist", "pexpire",
        "pexpireat", "pttl", "rename", "set", "time", "type", "unlink"]
HASHES = ["hdel", "hexists", "hget", "hgetall", "hincrby", "hkeys", "hlen", "hmget", "hmset",
          "hscan", "hset", "hsetnx", "hvals"]
LISTS = ["lindex", "llen", "lpop", "lpos", "lpush", "lrange", "lrem", "lset", "ltrim",
         "rpop", "rpoplpush", "rpush"]
SETS = ["sadd", "scard", "sismember", "smembers", "srem", "sscan"]
SORTED_SETS = ["zadd", "zcard", "zcount", "zlexcount", "zpopmin", "zrange", "zrangebylex",
               "zrangebyscore", "zrem", "zremrangebyrank", "zremrangebyscore", "zrevrange",
               "zrevrangebyscore", "zscore"]
STREAMS = ["xadd", "xdel", "xlen", "xrange", "xread", "xrevrange", "xtrim"]

ACL_COMMANDS: list[str] = [*SCRIPTING, *SERVER, *KEYS, *HASHES, *LISTS, *SETS,
                           *SORTED_SETS, *STREAMS]
CLUSTER_COMMANDS = ["cluster|slots", "command"]
TEST_ONLY_COMMANDS = ["scan"]

_RCALL = re.compile(r"""\b(?:rcall|redis\.p?call)\(\s*["']([A-Za-z]+)["']""")
_VARIABLE_COMMANDS = {  # rcall(<variable>, …) in bullmq's scripts, and what it holds
    "pushCmd": {"lpush", "rpush"}, "countCommand": {"hlen", "scard"},
    "command": {"sscan", "hscan"},
}


def acl_rules(key_patterns: list[str], *, password: str, extra: list[str] | None = None
              ) -> list[str]:
    """The ``ACL SETUSER`` rules (after the user name)."""
    return ["reset", "on", f">{password}", *(f"~{p}" for p in key_patterns),
            "resetchannels", "-@all", *(f"+{c}" for c in [*ACL_COMMANDS, *(extra or [])])]


def setuser_line(password: str, user: str = "nlq", prefix: str = "nlq"
                 ) -> str:
    """The documented one-liner (what docs/scaling.md shows)."""
    return f"ACL SETUSER {user} " + " ".join(acl_rules([f"{prefix}:*"], password=password))


def unknown_variable_calls() -> set[str]:
    """``rcall(<variable>, …)`` in bullmq's scripts whose commands we have not listed."""
    found: set[str] = set()
    for entry in resources.files("bullmq").joinpath("commands").iterdir():
        if entry.name.endswith(".lua"):
            found |= set(re.findall(r"\brcall\(\s*([A-Za-z_]\w*)\s*,", entry.read_text("utf-8")))
    return found - set(_VARIABLE_COMMANDS)


def lua_commands_used() -> set[str]:
    """Every command called by the pinned bullmq's Lua scripts and by ours (lower-case)."""
    found: set[str] = set()
    for entry in resources.files("bullmq").joinpath("commands").iterdir():
        if entry.name.endswith(".lua"):
            found |= {m.lower() for m in _RCALL.findall(entry.read_text("utf-8"))}
            for variable, commands in _VARIABLE_COMMANDS.items():
                if f"rcall({variable}" in entry.read_text("utf-8"):
                    found |= commands
    src = Path(__file__).resolve().parents[2] / "src" / "newsletter_queue"
    for path in src.rglob("*.py"):
        found |= {m.lower() for m in _RCALL.findall(path.read_text("utf-8"))}
    return found
