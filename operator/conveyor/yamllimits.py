"""Bounds on the YAML Conveyor parses from others: `.gitlab-ci.yml` files and a repository's
deploy templates. A document is refused before anything walks it when it is too large, nested too
deeply, or would expand through aliases beyond a number of nodes (a "billion laughs": a kilobyte
of nested aliases that PyYAML builds as shared objects, and that any walk, copy or JSON
serialisation then expands a billion times). Pure: nodes in, an error or nothing out.
"""

from __future__ import annotations

from collections.abc import Iterator

import yaml

# GitLab's own limits on a CI/CD configuration file (docs.gitlab.com, "Instance limits":
# maximum size 2 MB, depth 100).
MAX_INPUT_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 100
# Nodes of a document once every alias is expanded. A 2 MB file written out without aliases
# has a few hundred thousand; GitLab's templates have a few thousand.
MAX_EXPANDED_NODES = 1_000_000


class YAMLTooLarge(ValueError):
    """The document is over a bound; the message names it, and `line` is where (1-based)."""

    def __init__(self, message: str, line: int = 1) -> None:
        super().__init__(message)
        self.line = line


def check_size(length: int, what: str = "the file") -> None:
    if length > MAX_INPUT_BYTES:
        raise YAMLTooLarge(
            f"{what} is {length} bytes, more than the {MAX_INPUT_BYTES} bytes (2 MiB) allowed"
        )


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        yield from node.value
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key
            yield value


def check_node(
    root: yaml.Node, *, max_nodes: int = MAX_EXPANDED_NODES, max_depth: int = MAX_DEPTH
) -> None:
    """Raises YAMLTooLarge if `root` nests deeper than `max_depth`, refers to itself through an
    alias, or expands to more than `max_nodes` nodes. Linear in the composed nodes: each shared
    node is measured once (iteratively: a deep document must not exhaust Python's stack)."""
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, depth)
    open_nodes: set[int] = set()  # on the current path: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            count, depth = 1, 0
            for child in _children(node):
                child_count, child_depth = measured[id(child)]
                count += child_count
                depth = max(depth, child_depth)
            depth += 1
            line = node.start_mark.line + 1
            if depth > max_depth:
                raise YAMLTooLarge(f"nested more than {max_depth} levels deep", line)
            if count > max_nodes:
                raise YAMLTooLarge(
                    f"its aliases expand to more than {max_nodes} nodes (nested aliases, "
                    "a 'billion laughs')",
                    line,
                )
            measured[key] = (count, depth)
            continue
        if key in measured:
            continue
        if key in open_nodes:
            raise YAMLTooLarge(
                "an alias refers to a node that contains it", node.start_mark.line + 1
            )
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in measured)
