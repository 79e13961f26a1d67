"""The ground station's web dashboard (`python -m groundstation serve`): see `server`."""

from .cli import register_cli
from .server import serve

__all__ = ["register_cli", "serve"]
