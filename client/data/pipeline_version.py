"""A hash of the code that reads, checks and preprocesses a study: part of every cache key.

A site caches two things per study under a fingerprint: the preprocessed sample and the
verdict "valid" or "these problems". Both depend on the code as much as on the files and
settings, so the fingerprint includes this hash of

* the source of every ``client.data`` module that ``client.data.transforms`` (the
  deterministic pipeline) and ``client.data.dataset`` (validation and the index) import,
  directly or not, found by reading their ``import`` statements; and
* the versions of the libraries that compute a sample or decide whether a file reads
  (numpy, torch, MONAI, nibabel, pydicom, Pillow) and of pydicom's optional pixel decoders.

Why a hash rather than a version constant bumped by hand: a forgotten bump silently keeps
stale samples, or keeps a study excluded after the bug that excluded it was fixed; the
hash cannot be forgotten. The price is that any edit of those modules, even a comment,
makes each site validate its studies once more after an upgrade.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
from importlib import metadata
from pathlib import Path

__all__ = ["PIPELINE_ROOTS", "pipeline_code_hash", "pipeline_modules"]

#: The modules whose (transitive) ``client.data`` imports define the pipeline.
PIPELINE_ROOTS = ("client.data.transforms", "client.data.dataset")
_PACKAGE = "client.data"
_LIBRARIES = ("numpy", "torch", "monai", "nibabel", "pydicom", "pillow",
              # pixel decoders pydicom uses when installed: a new one makes more files readable
              "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle", "python-gdcm",
              "pyjpegls")


def _source_file(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"expected the module {module} to be importable, got no source for it")
    return Path(spec.origin)


def _imports(module: str, source: bytes) -> set[str]:
    """The ``client.data`` modules ``source`` imports (anywhere in the file, also lazily)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative import
                base = ".".join([*module.split(".")[: -node.level], node.module])
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for name in names:
            if name == _PACKAGE or not name.startswith(_PACKAGE + "."):
                continue
            found.add(name if _is_module(name) else name.rsplit(".", 1)[0])
    return found


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # ``package.module.Class``: the parent is no package
        return False


@functools.lru_cache(maxsize=1)
def pipeline_modules() -> tuple[str, ...]:
    """Every ``client.data`` module reachable by imports from :data:`PIPELINE_ROOTS`, sorted."""
    seen: set[str] = set()
    todo = list(PIPELINE_ROOTS)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(_imports(module, _source_file(module).read_bytes()) - seen)
    return tuple(sorted(seen))


@functools.lru_cache(maxsize=1)
def pipeline_code_hash() -> str:
    """sha256 (16 hex digits) of the pipeline modules' sources and the libraries' versions."""
    digest = hashlib.sha256()
    for module in pipeline_modules():
        digest.update(module.encode() + b"\0" + _source_file(module).read_bytes() + b"\0")
    for library in _LIBRARIES:
        try:
            version = metadata.version(library)
        except metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{library}={version}\0".encode())
    return digest.hexdigest()[:16]
