"""The project's version, in one place: the package metadata (pyproject.toml reads it
from here), the daemon's ``status`` and ``rpc.discover`` all use it."""

VERSION = "0.1.0"
