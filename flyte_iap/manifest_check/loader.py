"""Reading Kubernetes manifests: multi-document YAML with the line of every field.

Example::

    from flyte_iap.manifest_check.loader import load_text

    [service] = load_text("kind: Service\\napiVersion: v1\\nmetadata: {name: flyteadmin}\\n", "svc.yaml")
    service.ref  # "Service/flyteadmin"
    service.line_of("metadata", "name")  # 3

Helm output (``---`` separators, ``# Source:`` comments, empty documents) and ``kind: List`` documents
are understood; documents that are not Kubernetes objects (no ``kind``/``apiVersion``, e.g. a values
file) are skipped. PyYAML is imported inside the functions: importing this module costs nothing.

Input is bounded (hostile input is normal input): a file is read only if it is a regular file (or
named explicitly, or ``-``) and only up to :data:`MAX_FILE_BYTES`; a document whose aliases expand
past :data:`MAX_ALIAS_EXPANSIONS` nodes (a "billion laughs" bomb), that nests deeper than
:data:`MAX_DEPTH`, or that refers to itself is refused with one error; scalars YAML would turn into
values Python cannot hold (``2021-02-30``, a 5000-digit integer) stay strings.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from flyte_iap.errors import ConfigurationError

#: A path into an object: mapping keys as strings, sequence positions as ints.
FieldPath = tuple[str | int, ...]

_MANIFEST_SUFFIXES = (".yaml", ".yml")

#: The most bytes read from one file (or standard input): far above any real rendering.
MAX_FILE_BYTES = 64 * 1024 * 1024
#: The most bytes read from all inputs of one check together (memory stays bounded: about 30x this).
MAX_TOTAL_BYTES = 128 * 1024 * 1024
#: The most nodes that aliases (``*name``, ``<<: *name``) may add to one input by repetition.
MAX_ALIAS_EXPANSIONS = 100_000
#: The deepest nesting of mappings and sequences accepted (Kubernetes objects use about 20 levels).
MAX_DEPTH = 500


class ManifestError(ConfigurationError):
    """A manifest file cannot be read or is not valid YAML (exit code 2)."""

    default_hint = (
        "fix the file; to check a Helm chart, render it first: helm template ... | flyte-iap check -"
    )


class _once:
    """``functools.cached_property`` without its lock (Python 3.11 takes one on every first read)."""

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.func(obj)
        return value


@dataclass(frozen=True, eq=False)
class Manifest:
    """One Kubernetes object and where it came from (compared and hashed by identity).

    Its derived fields (``name``, ``namespace``, ``labels``, ...) are computed once: a check of 100,000
    objects reads them millions of times.

    ``lines`` maps a field path to its 1-based line; ``blocks`` maps the path of a block scalar
    (``key: |``) to the line its content starts on, so a finding about YAML embedded in a ConfigMap
    can point inside the string.
    """

    body: Mapping[str, Any]
    file: str
    line: int
    lines: Mapping[FieldPath, int] = field(default_factory=dict, repr=False)
    blocks: Mapping[FieldPath, int] = field(default_factory=dict, repr=False)
    #: Values derived from the object by the checks (parsed annotations), computed once per object.
    memo: dict[str, Any] = field(default_factory=dict, repr=False)

    @_once
    def kind(self) -> str:
        return str(self.body.get("kind") or "")

    @_once
    def api_version(self) -> str:
        return str(self.body.get("apiVersion") or "")

    @_once
    def group(self) -> str:
        """The API group: ``""`` for core objects, ``networking.k8s.io`` for an Ingress, ..."""
        group, slash, _ = self.api_version.rpartition("/")
        return group if slash else ""

    @_once
    def metadata(self) -> Mapping[str, Any]:
        meta = self.body.get("metadata")
        return meta if isinstance(meta, Mapping) else {}

    @_once
    def name(self) -> str:
        return str(self.metadata.get("name") or self.metadata.get("generateName") or "")

    @_once
    def namespace(self) -> str | None:
        """``None`` when the manifest leaves it to ``kubectl -n`` / ``helm -n``."""
        ns = self.metadata.get("namespace")
        return str(ns) if ns not in (None, "") else None

    @_once
    def labels(self) -> Mapping[str, str]:
        return _str_map(self.metadata.get("labels"))

    @_once
    def annotations(self) -> Mapping[str, str]:
        return _str_map(self.metadata.get("annotations"))

    @_once
    def spec(self) -> Mapping[str, Any]:
        spec = self.body.get("spec")
        return spec if isinstance(spec, Mapping) else {}

    @_once
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
        ManifestError: the text is not valid YAML, or is too nested or too expanded by aliases (the
            message has ``filename:line``).
    """
    import yaml

    loader = _loader_class()(text)
    manifests: list[Manifest] = []
    budget = [MAX_ALIAS_EXPANSIONS]
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            lines: dict[FieldPath, int] = {}
            blocks: dict[FieldPath, int] = {}
            # Walk (and bound) the node graph before anything expands it, building the value as we go.
            data, problem = _walk_nodes(node, lines, blocks, budget, loader)
            if problem is not None:
                raise ManifestError(f"{printable(filename)}:{problem[1]}: {problem[0]}", _BOUND_HINT)
            if not isinstance(data, Mapping):
                continue
            manifests.extend(_objects(data, filename, node.start_mark.line + 1, lines, blocks))
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, filename, text) from None
    finally:
        loader.dispose()
    return manifests


_BOUND_HINT = (
    "Kubernetes manifests need neither deep nesting nor repeated aliases; "
    "render or expand the file with the tool that wrote it and check the result"
)


def _loader_class() -> Any:
    """PyYAML's safe loader (the C one when built), keeping out-of-range scalars as strings."""
    global _LOADER
    if _LOADER is None:
        import yaml

        base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

        class BoundedLoader(base):  # type: ignore[misc, valid-type]
            pass

        for tag in ("int", "timestamp", "float"):
            full = f"tag:yaml.org,2002:{tag}"
            BoundedLoader.add_constructor(full, _scalar_or_text(base.yaml_constructors[full]))
        _LOADER = BoundedLoader
    return _LOADER


_LOADER: Any = None


def _scalar_or_text(construct: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    # 2021-02-30 matches YAML's timestamp pattern but is no date; Python refuses to convert integers
    # of more than 4300 digits. Kubernetes would see strings there too (or refuse the object).
    def constructor(loader: Any, node: Any) -> Any:
        try:
            return construct(loader, node)
        except (ValueError, OverflowError):
            return str(node.value)

    return constructor


def safe_loader() -> Any:
    """The loader class :func:`load_text` uses, for YAML embedded in objects (e.g. ConfigMap values)."""
    return _loader_class()


def index_node(
    root: Any,
    lines: dict[FieldPath, int] | None = None,
    blocks: dict[FieldPath, int] | None = None,
    budget: list[int] | None = None,
) -> tuple[str, int] | None:
    """Walk a composed YAML node graph once, recording the line of every field; bound its size.

    Each node is visited once, however many aliases point at it; the nodes those aliases would add
    on expansion are counted against ``budget[0]`` (decremented in place), so a document is refused
    before anything builds its expansion.

    Returns:
        ``None``, or ``(problem, line)`` when the graph nests deeper than :data:`MAX_DEPTH`, refers to
        itself, or its aliases expand past the budget.
    """
    return _walk_nodes(root, lines, blocks, budget, None)[1]


def _walk_nodes(
    root: Any,
    lines: dict[FieldPath, int] | None,
    blocks: dict[FieldPath, int] | None,
    budget: list[int] | None,
    constructor: Any,
) -> tuple[Any, tuple[str, int] | None]:
    """:func:`index_node`, and with a ``constructor`` also the document's Python value, in one pass.

    Plain maps, sequences and the core scalar types are built here (PyYAML's constructor is a
    recursive Python walk of its own, and the slowest part of reading a large rendering); anything
    else (merge keys, other tags) is handed to ``constructor`` for that node.
    """
    import yaml

    lines = {} if lines is None else lines
    blocks = {} if blocks is None else blocks
    budget = [MAX_ALIAS_EXPANSIONS] if budget is None else budget
    mapping_node, sequence_node, scalar_node = yaml.MappingNode, yaml.SequenceNode, yaml.ScalarNode
    sizes: dict[int, int] = {}  # node id -> nodes in its full expansion (collections only)
    values: dict[int, Any] = {}  # node id -> built value
    open_nodes: set[int] = set()
    build = constructor is not None
    # Iterative depth-first walk: (node, path, depth, children done?).
    stack: list[tuple[Any, FieldPath | None, int, bool]] = [(root, (), 0, False)]
    while stack:
        node, path, depth, done = stack.pop()
        key = id(node)
        if done:
            open_nodes.discard(key)
            size = 1
            if node.__class__ is mapping_node:
                for key_node, value_node in node.value:
                    size += sizes.get(id(key_node), 1) + sizes.get(id(value_node), 1)
            else:
                for item in node.value:
                    size += sizes.get(id(item), 1)
            sizes[key] = size
            if build:
                values[key] = _collection(node, values, constructor)
            continue
        if key in open_nodes:
            return None, ("an alias refers to the node that contains it (a recursive structure)", _line(node))
        if key in sizes:
            # An alias to a collection already walked: its expansion repeats it.
            budget[0] -= sizes[key]
            if budget[0] < 0:
                return None, ("too many alias expansions", _line(node))
            continue
        if depth > MAX_DEPTH:
            return None, (f"nested deeper than {MAX_DEPTH} levels", _line(node))
        cls = node.__class__
        if cls is not mapping_node and cls is not sequence_node:  # a scalar
            if path is not None:
                if path not in lines:
                    lines[path] = node.start_mark.line + 1
                if node.style in ("|", ">"):
                    # A block scalar's content starts on the line after its indicator.
                    blocks[path] = node.start_mark.line + 2
            if build and key not in values:
                values[key] = _scalar(node, constructor)
            continue
        if path is not None and path not in lines:
            lines[path] = node.start_mark.line + 1
        open_nodes.add(key)
        stack.append((node, path, depth, True))
        child_depth = depth + 1
        # Scalars (most nodes: every key) are handled here; only collections go on the stack.
        if cls is mapping_node:
            for key_node, value_node in reversed(node.value):
                child_path: FieldPath | None = None
                if key_node.__class__ is scalar_node:
                    if path is not None:
                        child_path = (*path, str(key_node.value))
                        if child_path not in lines:
                            lines[child_path] = key_node.start_mark.line + 1
                    if build and id(key_node) not in values:
                        values[id(key_node)] = _scalar(key_node, constructor)
                else:
                    stack.append((key_node, None, child_depth, False))
                if value_node.__class__ is scalar_node:
                    if child_path is not None and value_node.style in ("|", ">"):
                        blocks[child_path] = value_node.start_mark.line + 2
                    if build and id(value_node) not in values:
                        values[id(value_node)] = _scalar(value_node, constructor)
                else:
                    stack.append((value_node, child_path, child_depth, False))
        else:
            items = node.value
            for position in range(len(items) - 1, -1, -1):
                item = items[position]
                child_path = (*path, position) if path is not None else None
                if item.__class__ is scalar_node:
                    if child_path is not None:
                        if child_path not in lines:
                            lines[child_path] = item.start_mark.line + 1
                        if item.style in ("|", ">"):
                            blocks[child_path] = item.start_mark.line + 2
                    if build and id(item) not in values:
                        values[id(item)] = _scalar(item, constructor)
                else:
                    stack.append((item, child_path, child_depth, False))
    return (values.get(id(root)) if build else None), None


_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"


def _scalar(node: Any, constructor: Any) -> Any:
    tag = node.tag
    if tag == _STR_TAG:
        return node.value
    if tag == _NULL_TAG:
        return None
    if tag == _BOOL_TAG:
        return node.value.lower() in ("yes", "true", "on")
    if tag == _INT_TAG and node.value.isdigit() and len(node.value) < 4000:
        return int(node.value)
    if tag == _MERGE_TAG:
        return None  # the key "<<": its mapping is built by the constructor, which merges
    return constructor.construct_object(node, deep=True)


def _collection(node: Any, values: dict[int, Any], constructor: Any) -> Any:
    import yaml

    if node.__class__ is yaml.SequenceNode:
        if node.tag != _SEQ_TAG:
            return constructor.construct_object(node, deep=True)
        return [values[id(item)] for item in node.value]
    if node.tag != _MAP_TAG or any(k.tag == _MERGE_TAG for k, _ in node.value):
        return constructor.construct_object(node, deep=True)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = values[id(key_node)]
        try:
            out[key] = values[id(value_node)]
        except TypeError:  # an unhashable key: let PyYAML refuse it with its own message
            return constructor.construct_object(node, deep=True)
    return out


def _line(node: Any) -> int:
    return node.start_mark.line + 1


def _yaml_error(exc: Exception, filename: str, text: str) -> ManifestError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{filename}:{mark.line + 1}" if mark is not None else filename
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    message = f"{where}: invalid YAML: {problem}"
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None and mark is not None and context_mark.line != mark.line:
        message += f" ({context} at line {context_mark.line + 1})"
    message = printable(message)
    if "{{" in text:
        return ManifestError(
            message,
            "this looks like an unrendered Helm template: check the rendering instead, "
            "e.g. helm template RELEASE CHART -f values.yaml | flyte-iap check -",
        )
    return ManifestError(message)


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


def manifest_files(
    paths: Iterable[str | os.PathLike[str]], on_skip: Callable[[str, str], None] | None = None
) -> Iterator[str]:
    """The files to read for ``paths``: files as given, directories walked for ``*.yaml``/``*.yml``.

    ``-`` stands for standard input and is passed through. Hidden directories and the ``templates/``
    directory of a Helm chart (unrendered templates are not YAML) are skipped during a walk, and so is
    anything in a directory that is not a regular file (a FIFO named ``x.yaml`` would block the read
    forever): ``on_skip(path, reason)`` is told about each. A path named explicitly is read whatever it
    is (``<(helm template ...)`` is a pipe), up to :data:`MAX_FILE_BYTES`.

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
            yield from _walk(path, on_skip)
        elif path.exists():
            yield name
        else:
            raise ManifestError(
                f"{printable(name)}: no such file or directory", "give a manifest file, a directory or -"
            )


def _walk(root: Path, on_skip: Callable[[str, str], None] | None) -> Iterator[str]:
    for directory, subdirs, files in os.walk(root):
        here = Path(directory)
        subdirs[:] = sorted(
            d
            for d in subdirs
            if not d.startswith(".") and not (d == "templates" and (here / "Chart.yaml").exists())
        )
        for name in sorted(files):
            if not name.endswith(_MANIFEST_SUFFIXES) or name.startswith("."):
                continue
            path = here / name
            try:
                mode = path.stat().st_mode
            except OSError as exc:
                if on_skip is not None:
                    on_skip(str(path), f"cannot read: {exc.strerror or exc}")
                continue
            if stat.S_ISREG(mode):
                yield str(path)
            elif on_skip is not None:
                on_skip(str(path), "not a regular file (only regular files are read in a directory)")


def read_source(name: str, stdin: TextIO | None = None) -> str:
    """The text of one input: a file, or standard input for ``-``, at most :data:`MAX_FILE_BYTES`.

    Raises:
        ManifestError: the input cannot be read, is larger than the limit, or is not UTF-8.
    """
    shown = "<stdin>" if name == "-" else printable(name)
    limit = MAX_FILE_BYTES
    try:
        if name == "-":
            stream = stdin if stdin is not None else sys.stdin
            buffer = getattr(stream, "buffer", None)
            if buffer is None:  # a text stream without bytes underneath (tests, StringIO)
                text = stream.read(limit + 1)
                if len(text) > limit:
                    raise ManifestError(f"{shown}: larger than {limit // 2**20} MiB", _TOO_BIG_HINT)
                return text
            data = buffer.read(limit + 1)
        else:
            with open(name, "rb") as handle:
                data = handle.read(limit + 1)
    except OSError as exc:
        raise ManifestError(f"{shown}: cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ManifestError(f"{shown}: larger than {limit // 2**20} MiB", _TOO_BIG_HINT)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{shown}: not UTF-8 text (byte {exc.start})") from None


_TOO_BIG_HINT = "check the manifests of one deployment at a time; a real rendering is far smaller"


def load_paths(
    paths: Iterable[str | os.PathLike[str]],
    stdin: TextIO | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> tuple[list[Manifest], int]:
    """Load every object under ``paths`` (see :func:`manifest_files`).

    Args:
        paths: files, directories, or ``-``.
        stdin: the stream ``-`` reads (default ``sys.stdin``).
        on_skip: called with ``(path, reason)`` for each file a directory walk leaves out.

    Returns:
        ``(objects, number_of_files_read)``.

    Raises:
        ManifestError: a path is missing or unreadable, or holds invalid YAML.
    """
    manifests: list[Manifest] = []
    count = 0
    total = 0
    for name in manifest_files(paths, on_skip):
        display = "<stdin>" if name == "-" else name
        text = read_source(name, stdin)
        total += len(text)
        if total > MAX_TOTAL_BYTES:
            raise ManifestError(
                f"the inputs together are larger than {MAX_TOTAL_BYTES // 2**20} MiB "
                f"(at {printable(display)})",
                _TOO_BIG_HINT,
            )
        manifests.extend(load_text(text, display))
        count += 1
    return manifests, count


def printable(text: str) -> str:
    """``text`` with control characters (terminal escapes, newlines) shown as ``\\xNN`` escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
