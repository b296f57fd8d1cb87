"""Who may use the server: anyone on this machine, and only holders of the access token from elsewhere.

Bound to a loopback address, no token is needed (only local programs can connect). Bound to any other
address, the server requires a token — the configured one, or one generated at start — on every request
that starts a session or reads data: `POST /offer`, `/ice`, `/stats`, `/metrics`, `/sessions/…`. The pages
themselves hold nothing and load without it; the page reads the token from its URL (`?token=…`, printed
at start and shown as a QR code for phones) and sends it as `Authorization: Bearer …`. Tokens are compared
in constant time.
"""

from __future__ import annotations

import hmac
import io
import ipaddress
import secrets

from aiohttp import web

PROTECTED_PREFIXES = ("/offer", "/ice", "/stats", "/metrics", "/sessions/", "/source")  # /source: the camera


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(host: str, configured: str) -> str | None:
    """The token in force: the configured one, a new one for a non-loopback bind, or None (no check)."""
    if configured:
        return configured
    return None if is_loopback(host) else secrets.token_urlsafe(18)


def presented_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer "):]
    return request.query.get("token", "")  # for <img> and the printed URL, which cannot set headers


def middleware(token: str | None):  # noqa: ANN201 - aiohttp middleware
    """Refuses protected requests without the token with 401 and a JSON reason."""

    @web.middleware
    async def check(request: web.Request, handler):  # noqa: ANN001, ANN202
        if token is not None and request.path.startswith(PROTECTED_PREFIXES):
            if not hmac.compare_digest(presented_token(request).encode(), token.encode()):
                return web.json_response({"error": "access token required: open the URL printed at start"},
                                         status=401)
        return await handler(request)

    return check


def qr_text(url: str) -> str:
    """The URL as a QR code drawn with text, for a phone to scan off the terminal."""
    import qrcode

    code = qrcode.QRCode(border=1)
    code.add_data(url)
    out = io.StringIO()
    code.print_ascii(out=out)
    return out.getvalue()
