"""The user's umask, so that files written through a temporary file (created 0600) end
up as readable as any other file the user writes."""

from __future__ import annotations

import os


def current_umask() -> int:
    """The process's umask (reading it means setting it, so it is put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain new file gets: 0666 less the umask (0644 under umask 022)."""
    return 0o666 & ~current_umask()


def folder_mode() -> int:
    """The mode a new folder gets: 0777 less the umask (0755 under umask 022)."""
    return 0o777 & ~current_umask()
