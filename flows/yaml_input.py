"""Reading a user's YAML file without letting it exhaust the machine.

``yaml.safe_load`` builds no objects from tags, but it still reads a file of any size, and aliases
let a few lines stand for billions of nodes ("billion laughs") that validation would then walk.
Files here are capped in bytes and in nodes *after* alias expansion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20  # 1 MiB: a campaign file is a page of settings
MAX_NODES = 100_000  # scalars + collections, counting every alias expansion


class YamlInputError(ValueError):
    """The file is too large, not YAML, or expands beyond the node limit."""


def _expanded_size(node: yaml.Node, memo: dict[int, int], limit: int) -> int:
    key = id(node)
    if key in memo:
        if memo[key] < 0:
            raise YamlInputError("an alias refers to the node that contains it (a recursive structure)")
        return memo[key]
    memo[key] = -1
    if isinstance(node, yaml.ScalarNode):
        size = 1
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, memo, limit) for child in node.value)
    else:
        size = 1 + sum(_expanded_size(k, memo, limit) + _expanded_size(v, memo, limit) for k, v in node.value)
    if size > limit:
        raise YamlInputError(f"it expands to more than {limit:,} YAML nodes (through aliases?)")
    memo[key] = size
    return size


def read_yaml(path: Path, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES) -> Any:
    """The document in ``path``; :class:`YamlInputError` (naming the file) when it is unsafe or invalid."""
    size = path.stat().st_size
    if size > max_bytes:
        raise YamlInputError(f"{path} is {size:,} bytes; a campaign file may have at most {max_bytes:,}")
    loader = yaml.SafeLoader(path.read_bytes())
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, max_nodes)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise YamlInputError(f"{path} is not valid YAML: {exc}") from None
    except YamlInputError as exc:
        raise YamlInputError(f"{path}: {exc}") from None
    finally:
        loader.dispose()
