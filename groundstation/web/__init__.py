"""The ground station's web dashboard (`python -m groundstation serve`): see `server`."""

from .server import Dashboard, register_cli, serve

__all__ = ["Dashboard", "register_cli", "serve"]
