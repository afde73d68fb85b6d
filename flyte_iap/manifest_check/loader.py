"""Reading Kubernetes manifests: multi-document YAML with the line of every field.

Example::

    from flyte_iap.manifest_check.loader import load_text

    [service] = load_text("kind: Service\\napiVersion: v1\\nmetadata: {name: flyteadmin}\\n", "svc.yaml")
    service.ref  # "Service/flyteadmin"
    service.line_of("metadata", "name")  # 3

Helm output (``---`` separators, ``# Source:`` comments, empty documents) and ``kind: List`` documents
are understood; documents that are not Kubernetes objects (no ``kind``/``apiVersion``, e.g. a values
file) are skipped. PyYAML is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from flyte_iap.errors import ConfigurationError

#: A path into an object: mapping keys as strings, sequence positions as ints.
FieldPath = tuple[str | int, ...]

_MANIFEST_SUFFIXES = (".yaml", ".yml")


class ManifestError(ConfigurationError):
    """A manifest file cannot be read or is not valid YAML (exit code 2)."""

    default_hint = (
        "fix the file; to check a Helm chart, render it first: helm template ... | flyte-iap check -"
    )


@dataclass(frozen=True, eq=False)
class Manifest:
    """One Kubernetes object and where it came from (compared and hashed by identity).

    ``lines`` maps a field path to its 1-based line; ``blocks`` maps the path of a block scalar
    (``key: |``) to the line its content starts on, so a finding about YAML embedded in a ConfigMap
    can point inside the string.
    """

    body: Mapping[str, Any]
    file: str
    line: int
    lines: Mapping[FieldPath, int] = field(default_factory=dict, repr=False)
    blocks: Mapping[FieldPath, int] = field(default_factory=dict, repr=False)

    @property
    def kind(self) -> str:
        return str(self.body.get("kind") or "")

    @property
    def api_version(self) -> str:
        return str(self.body.get("apiVersion") or "")

    @property
    def group(self) -> str:
        """The API group: ``""`` for core objects, ``networking.k8s.io`` for an Ingress, ..."""
        group, slash, _ = self.api_version.rpartition("/")
        return group if slash else ""

    @property
    def metadata(self) -> Mapping[str, Any]:
        meta = self.body.get("metadata")
        return meta if isinstance(meta, Mapping) else {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name") or self.metadata.get("generateName") or "")

    @property
    def namespace(self) -> str | None:
        """``None`` when the manifest leaves it to ``kubectl -n`` / ``helm -n``."""
        ns = self.metadata.get("namespace")
        return str(ns) if ns not in (None, "") else None

    @property
    def labels(self) -> Mapping[str, str]:
        return _str_map(self.metadata.get("labels"))

    @property
    def annotations(self) -> Mapping[str, str]:
        return _str_map(self.metadata.get("annotations"))

    @property
    def spec(self) -> Mapping[str, Any]:
        spec = self.body.get("spec")
        return spec if isinstance(spec, Mapping) else {}

    @property
    def ref(self) -> str:
        """``Kind/namespace/name``, or ``Kind/name`` when the manifest has no namespace."""
        name = self.name or "<unnamed>"
        return f"{self.kind}/{self.namespace}/{name}" if self.namespace else f"{self.kind}/{name}"

    def get(self, *path: str | int) -> Any:
        """The value at ``path`` (``None`` if any step is missing or of the wrong type)."""
        node: Any = self.body
        for step in path:
            if isinstance(step, int):
                if not isinstance(node, list) or not -len(node) <= step < len(node):
                    return None
                node = node[step]
            else:
                if not isinstance(node, Mapping) or step not in node:
                    return None
                node = node[step]
        return node

    def line_of(self, *path: str | int) -> int:
        """Line of the deepest part of ``path`` that exists in the file (the document start if none)."""
        key = tuple(str(p) if not isinstance(p, int) else p for p in path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.line

    def line_inside(self, path: FieldPath, inner_line: int) -> int:
        """Line of ``inner_line`` (1-based) inside the block-scalar string at ``path``."""
        start = self.blocks.get(path)
        if start is None:
            return self.line_of(*path)
        return start + inner_line - 1

    def string_data(self) -> dict[str, str]:
        """A Secret's or ConfigMap's values as text: ``data`` (base64 for Secrets) and ``stringData``."""
        out: dict[str, str] = {}
        data = self.body.get("data")
        if isinstance(data, Mapping):
            for key, value in data.items():
                if value is None:
                    out[str(key)] = ""
                elif self.kind == "Secret":
                    try:
                        out[str(key)] = base64.b64decode(str(value), validate=False).decode(
                            "utf-8", "replace"
                        )
                    except (binascii.Error, ValueError):
                        out[str(key)] = ""
                else:
                    out[str(key)] = str(value)
        string_data = self.body.get("stringData")
        if isinstance(string_data, Mapping):
            out.update({str(k): "" if v is None else str(v) for k, v in string_data.items()})
        return out


def _str_map(value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def load_text(text: str, filename: str = "<stdin>") -> list[Manifest]:
    """Parse multi-document YAML into the Kubernetes objects it holds.

    Args:
        text: the YAML (any number of ``---``-separated documents).
        filename: how findings and errors name this input.

    Returns:
        One :class:`Manifest` per object, in file order; ``kind: List`` documents are expanded.

    Raises:
        ManifestError: the text is not valid YAML (the message has ``filename:line``).
    """
    import yaml

    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_cls(text)
    manifests: list[Manifest] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            data = loader.construct_document(node)
            if not isinstance(data, Mapping):
                continue
            lines: dict[FieldPath, int] = {}
            blocks: dict[FieldPath, int] = {}
            _index_lines(node, (), lines, blocks)
            manifests.extend(_objects(data, filename, node.start_mark.line + 1, lines, blocks))
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, filename, text) from None
    finally:
        loader.dispose()
    return manifests


def _yaml_error(exc: Exception, filename: str, text: str) -> ManifestError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{filename}:{mark.line + 1}" if mark is not None else filename
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    message = f"{where}: invalid YAML: {problem}"
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None and mark is not None and context_mark.line != mark.line:
        message += f" ({context} at line {context_mark.line + 1})"
    if "{{" in text:
        return ManifestError(
            message,
            "this looks like an unrendered Helm template: check the rendering instead, "
            "e.g. helm template RELEASE CHART -f values.yaml | flyte-iap check -",
        )
    return ManifestError(message)


def _index_lines(
    node: Any, path: FieldPath, lines: dict[FieldPath, int], blocks: dict[FieldPath, int]
) -> None:
    import yaml

    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            child = (*path, str(key_node.value))
            lines.setdefault(child, key_node.start_mark.line + 1)
            _index_lines(value_node, child, lines, blocks)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            _index_lines(item, (*path, position), lines, blocks)
    elif isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        # A block scalar's content starts on the line after its indicator.
        blocks[path] = node.start_mark.line + 2


def _objects(
    data: Mapping[str, Any],
    filename: str,
    line: int,
    lines: dict[FieldPath, int],
    blocks: dict[FieldPath, int],
) -> Iterator[Manifest]:
    kind = data.get("kind")
    if not isinstance(kind, str) or not isinstance(data.get("apiVersion"), str):
        return
    items = data.get("items")
    if kind == "List" or (kind.endswith("List") and isinstance(items, list)):
        for position, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, Mapping):
                continue
            prefix = ("items", position)
            sub_lines = {p[2:]: n for p, n in lines.items() if p[:2] == prefix}
            sub_blocks = {p[2:]: n for p, n in blocks.items() if p[:2] == prefix}
            yield from _objects(item, filename, lines.get(prefix, line), sub_lines, sub_blocks)
        return
    yield Manifest(body=data, file=filename, line=line, lines=lines, blocks=blocks)


def manifest_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[str]:
    """The files to read for ``paths``: files as given, directories walked for ``*.yaml``/``*.yml``.

    ``-`` stands for standard input and is passed through. Hidden directories and the ``templates/``
    directory of a Helm chart (unrendered templates are not YAML) are skipped during a walk.

    Raises:
        ManifestError: a path does not exist.
    """
    for raw in paths:
        name = os.fspath(raw)
        if name == "-":
            yield name
            continue
        path = Path(name)
        if path.is_dir():
            yield from _walk(path)
        elif path.exists():
            yield name
        else:
            raise ManifestError(
                f"{name}: no such file or directory", "give a manifest file, a directory or -"
            )


def _walk(root: Path) -> Iterator[str]:
    for directory, subdirs, files in os.walk(root):
        here = Path(directory)
        subdirs[:] = sorted(
            d
            for d in subdirs
            if not d.startswith(".") and not (d == "templates" and (here / "Chart.yaml").exists())
        )
        for name in sorted(files):
            if name.endswith(_MANIFEST_SUFFIXES) and not name.startswith("."):
                yield str(here / name)


def read_source(name: str, stdin: TextIO | None = None) -> str:
    """The text of one input: a file, or standard input for ``-``.

    Raises:
        ManifestError: the file cannot be read or is not UTF-8.
    """
    if name == "-":
        stream = stdin if stdin is not None else sys.stdin
        return stream.read()
    try:
        return Path(name).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{name}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ManifestError(f"{name}: cannot read: {exc.strerror or exc}") from None


def load_paths(
    paths: Iterable[str | os.PathLike[str]], stdin: TextIO | None = None
) -> tuple[list[Manifest], int]:
    """Load every object under ``paths`` (see :func:`manifest_files`).

    Returns:
        ``(objects, number_of_files_read)``.

    Raises:
        ManifestError: a path is missing or unreadable, or holds invalid YAML.
    """
    manifests: list[Manifest] = []
    count = 0
    for name in manifest_files(paths):
        display = "<stdin>" if name == "-" else name
        manifests.extend(load_text(read_source(name, stdin), display))
        count += 1
    return manifests, count
