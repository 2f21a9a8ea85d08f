"""The planned config as YAML text with a comment on every choice (``render_config``).

Entries are ``(dotted key, value, reason)`` (``segkit.plan.rules.Entry``): a top-level key or ``section.key``.
Each is written as ``key: <value in flow style>  # reason`` below its section, a list of mappings (the
classes) one item a line; the text loads back (``yaml.safe_load``) to exactly the values given.
"""

from __future__ import annotations

from typing import Any

import yaml

SECTIONS = ("prepare", "data", "model", "loss", "train", "augment", "evaluate", "cascade")


def _flow(value: Any) -> str:
    text: str = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()
    return text.removesuffix("\n...").strip()


def _line(indent: str, key: str, value: Any, reason: str) -> list[str]:
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [f"{indent}{key}:  # {reason}"] + [f"{indent}  - {_flow(v)}" for v in value]
    return [f"{indent}{key}: {_flow(value)}  # {reason}"]


def render_config(entries: list[tuple[str, Any, str]], header: list[str]) -> str:
    """The YAML text of ``entries`` under the comment lines ``header`` (given without ``#``)."""
    lines = [f"# {h}".rstrip() for h in header]
    lost = [k for k, _, _ in entries if "." in k and k.split(".", 1)[0] not in SECTIONS]
    if lost:  # a planned key must never be dropped silently
        raise ValueError(f"planned key {lost[0]} is in no section render_config writes "
                         f"({', '.join(SECTIONS)})")
    for key, value, reason in entries:
        if "." not in key:
            lines += _line("", key, value, reason)
    for section in SECTIONS:
        inside = [(k.split(".", 1)[1], v, r) for k, v, r in entries if k.startswith(section + ".")]
        if inside:
            lines.append(f"{section}:")
            for key, value, reason in inside:
                lines += _line("  ", key, value, reason)
    return "\n".join(lines) + "\n"
