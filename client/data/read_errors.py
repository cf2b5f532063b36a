"""What counts as a *data* error while reading a file (reported per file) and what does not (raised).

A data error is a fault of one file that the site operator can fix: it is missing or not
readable by the site's user, it is not in a format fedmm reads, its header or voxels are
damaged, it holds something that is not a grey-scale volume. Those become
``DataProblemError`` naming the file, so the study is skipped and the rest of the site loads.

Everything else is *not* the file's fault and must fail loudly instead of silently
excluding data: the machine (``MemoryError``, an ``OSError`` with an errno such as ENOSPC,
EIO or EMFILE) and the code (any other exception outside the library call that reads the
file). Only the narrow block that hands a file's bytes to nibabel or pydicom is wrapped by
:func:`reading`, so an exception raised there is the library's verdict on that file.
"""

from __future__ import annotations

import errno
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from client.data.adapter import DataProblem, DataProblemError

__all__ = ["REDOWNLOAD_FIX", "access_problem", "data_problem_in", "reading"]

REDOWNLOAD_FIX = "copy or export the file again from its source (the copy on disk is damaged), or remove it."

#: errno values that describe one path rather than the machine: the operator fixes the file.
_PATH_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.ELOOP,
                errno.ENAMETOOLONG}


def access_problem(path: Path, err: OSError) -> DataProblem:
    """A file that cannot be opened: missing, not readable by this user, not a file."""
    if err.errno == errno.ENOENT:
        return DataProblem(path=path, problem="expected a file here, got nothing (missing or moved).",
                           fix="restore the file or correct the path that names it.")
    if err.errno in (errno.EACCES, errno.EPERM):
        return DataProblem(path=path, problem="expected a file the site's user may read, got "
                           f"'permission denied' ({err.strerror}).",
                           fix="give the site's user read access (chmod/chown), or remove the file.")
    return DataProblem(path=path, problem=f"expected a readable file, got {err.strerror or err}.",
                       fix="point the study at the image file itself.")


def _library_errors() -> tuple[type[BaseException], ...]:
    """Exceptions nibabel, pydicom and the decompressors raise for bad file content."""
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError
    from pydicom.errors import InvalidDicomError

    # pydicom reports a missing or malformed element with AttributeError/KeyError/TypeError
    # and a failed decoder with RuntimeError; inside `reading` they concern the file only.
    return (ImageFileError, HeaderDataError, InvalidDicomError, ValueError, EOFError, zlib.error,
            AttributeError, KeyError, IndexError, TypeError, RuntimeError, NotImplementedError)


def _format_reason(err: BaseException) -> tuple[str, str]:
    """(what was found, fix) for a library's complaint about a file's content."""
    text = " ".join(str(err).split()) or type(err).__name__
    lowered = text.lower()
    if type(err).__name__ == "BadGzipFile" or "not a gzip" in lowered:
        return ("a file whose name ends in .gz but whose bytes are not gzip-compressed",
                "rename it without .gz if it is an uncompressed image, or " + REDOWNLOAD_FIX)
    if "cannot work out file type" in lowered:  # nibabel: no known header at the start
        return ("bytes that do not start with a NIfTI, Analyze or MGH header: the file is damaged, "
                "cut short before its header ends, or another format under this name", REDOWNLOAD_FIX)
    if type(err).__name__ == "InvalidDicomError":
        return ("a file without the DICOM Part-10 preamble ('DICM') and file meta information",
                "export it again as a DICOM Part-10 file (e.g. `dcmconv` or `gdcmconv`), or remove it.")
    if isinstance(err, EOFError | zlib.error) or ("expected" in lowered and "bytes" in lowered):
        return (f"a file that ends early ({text}): it is truncated, e.g. an interrupted copy",
                REDOWNLOAD_FIX)
    return f"an error from the reader: {type(err).__name__}: {text}", REDOWNLOAD_FIX


@contextmanager
def reading(path: Path, what: str) -> Iterator[None]:
    """Turn a library's complaint about the file being read into a ``DataProblemError``.

    Wrap only the call that hands ``path``'s bytes to nibabel or pydicom. ``MemoryError`` and
    ``OSError`` with an errno about the machine (ENOSPC, EIO, EMFILE, ...) propagate unchanged.

    Args:
        path: the file being read (named in the problem).
        what: what it should be, e.g. ``"NIfTI-1 volume"``.
    """
    try:
        yield
    except DataProblemError:
        raise
    except MemoryError:
        raise
    except OSError as err:
        if err.errno in _PATH_ERRNOS:
            raise DataProblemError(access_problem(path, err)) from err
        if err.errno is not None:
            raise  # the disk or the machine, not this file
        found, fix = _format_reason(err)  # nibabel's "Expected N bytes", gzip's BadGzipFile
        raise DataProblemError(DataProblem(path=path, problem=f"expected a readable {what}, got {found}.",
                                           fix=fix)) from err
    except _library_errors() as err:
        found, fix = _format_reason(err)
        raise DataProblemError(DataProblem(path=path, problem=f"expected a readable {what}, got {found}.",
                                           fix=fix)) from err


def data_problem_in(err: BaseException) -> DataProblem | None:
    """The ``DataProblem`` behind ``err``, or None when ``err`` is not a data error.

    MONAI's ``Compose`` wraps a transform's exception as ``RuntimeError(...) from err``, once
    per level; only that explicit chain of causes is followed, so an unrelated error raised
    while another was being handled is never mistaken for a data error.
    """
    cause: BaseException | None = err
    for _ in range(32):
        if isinstance(cause, DataProblemError):
            return cause.problem
        if not isinstance(cause, RuntimeError) or cause.__cause__ is None:
            return None
        cause = cause.__cause__
    return None
