"""The image's HEALTHCHECK: /health on this container's port answers "ok", over HTTP or, with TLS, HTTPS.

/health needs no token. The certificate is not checked: this asks the server beside it, by loopback.
"""

import http.client
import json
import os
import ssl
import sys
import urllib.request

port = os.environ.get("HEALTH_PORT", "8080")
unverified = ssl._create_unverified_context()  # the server's own self-signed or user certificate
for scheme in ("http", "https"):
    try:
        with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/health", timeout=5, context=unverified) as res:
            status = json.load(res).get("status")
    except (OSError, ValueError, http.client.HTTPException):
        continue
    print(f"{scheme} /health: {status}")
    sys.exit(0 if status == "ok" else 1)
print(f"no answer from /health on port {port}")
sys.exit(1)
