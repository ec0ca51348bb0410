"""A page and its files served from a package's static/ folder (package data, read once from the installed
package): the dashboard and the API docs page. Only files that exist there are served; nothing is loaded from
another origin."""

from __future__ import annotations

import functools
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import PurePosixPath

from aiohttp import web
from aiohttp.typedefs import Handler

from inferno.errors import InfernoError

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}
_PLAIN_TEXT = "text/plain; charset=utf-8"
PAGE = "index.html"


class StaticSite:
    def __init__(self, package: str, what: str, content_security_policy: str) -> None:
        """package: whose static/ folder; what: the site's name in errors ("the dashboard")."""
        self._package = package
        self._what = what
        self._policy = content_security_policy

    @property
    def page(self) -> Handler:
        async def page(request: web.Request) -> web.Response:
            return self._response(PAGE)

        return page

    @property
    def asset(self) -> Handler:
        """GET .../{path}: one of the files under static/ (other than the page), by its relative path."""

        async def asset(request: web.Request) -> web.Response:
            path = request.match_info["path"]
            if path == PAGE or path not in self.files():
                raise InfernoError("not_found", f"{self._what} has no file {path!r}", {"param": "path"})
            return self._response(path)

        return asset

    def _response(self, path: str) -> web.Response:
        content_type = _CONTENT_TYPES.get(PurePosixPath(path).suffix, _PLAIN_TEXT)
        headers = {
            "Content-Type": content_type,
            # Revalidated on each load, so a new version of the server is never shown with an old script.
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        }
        if content_type.startswith("text/html"):
            headers["Content-Security-Policy"] = self._policy
        return web.Response(body=self.files()[path], headers=headers)

    def files(self) -> dict[str, bytes]:
        """Every file under static/ by its path relative to it ("js/main.js")."""
        return _static_files(self._package)


@functools.cache
def _static_files(package: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            elif entry.is_file():
                files[prefix + entry.name] = entry.read_bytes()

    walk(resources.files(package).joinpath("static"), "")
    return files
