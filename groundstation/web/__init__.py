"""The ground station's web dashboard (`python -m groundstation serve`): see `server`."""

from .cli import register_cli
from .server import Dashboard, serve

__all__ = ["Dashboard", "register_cli", "serve"]
