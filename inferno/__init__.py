"""Inferno: a self-hosted LLM inference server."""

from pathlib import Path

__version__ = "0.1.0"

# Installed, setuptools maps core/ and adapters/ to inferno.core and inferno.adapters. In a source checkout
# (python -m inferno.cli from the repo root) they sit beside this package, so look for them there too.
_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "core" / "__init__.py").is_file():
    __path__.append(str(_checkout))
