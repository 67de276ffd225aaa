"""Paths sent by clients (an img2img input, for instance) must stay inside configured folders.

Refused: empty paths, NUL bytes, ``..`` anywhere, Windows drive (``C:\\…``,
``C:foo``) and UNC (``\\\\server\\share``) forms, absolute paths outside the
folders, and symlinks whose target leaves them. A relative path is taken
relative to the first folder.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath

from bridge.errors import BadArguments

_DRIVE = re.compile(r"^[A-Za-z]:")
MAX_PATH = 1024  # characters of a path a client sends
MAX_NAME = 255  # characters of one of its parts (most file systems' limit)


def resolve_input_path(raw: str, folders: Sequence[Path]) -> Path:
    """The real path of ``raw`` inside one of ``folders``; BadArguments says why not."""
    if not folders:
        raise BadArguments("no input folder is configured on the bridge; the bridge accepts no input files")
    if not raw or "\x00" in raw:
        raise BadArguments("the path is empty or contains a NUL byte")
    if raw.startswith(("\\\\", "//")) or _DRIVE.match(raw):
        raise BadArguments(
            f"{raw!r}: drive letters and network (UNC) paths are not allowed; send a path inside an input folder"
        )
    parts = set(PurePosixPath(raw).parts) | set(PureWindowsPath(raw).parts)
    if ".." in parts:
        raise BadArguments(f"{raw!r}: '..' is not allowed in paths")
    if len(raw) > MAX_PATH or any(len(part) > MAX_NAME for part in PurePosixPath(raw).parts):
        raise BadArguments(
            f"{raw[:60]!r}…: too long (paths up to {MAX_PATH} characters, names up to {MAX_NAME}); use a shorter name"
        )
    try:
        roots = [folder.resolve() for folder in folders]
        candidate = Path(raw) if Path(raw).is_absolute() else roots[0] / raw
        real = candidate.resolve()
        for root in roots:
            if real == root or root in real.parents:
                if not real.is_file():
                    raise BadArguments(f"{raw!r} is not a file in {root}")
                return real
    except (OSError, RuntimeError) as exc:  # a name the file system refuses; a symlink loop (Path.resolve
        # raises RuntimeError for one before Python 3.13, OSError from 3.13 on)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BadArguments(f"{raw[:60]!r}: {reason}; send the path of a file inside an input folder") from None
    raise BadArguments(f"{raw!r} is outside the input folders ({', '.join(str(r) for r in roots)})")
