"""TLS for phones: browsers allow the camera only on HTTPS (or localhost).

Either a given certificate and key, or a self-signed one made with `cryptography` and kept in the
user's cache so the browser's exception survives restarts.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path


def make_self_signed(directory: Path, names: list[str]) -> tuple[Path, Path]:
    """Writes (cert, key) for the given host names / IP addresses, reusing a cached pair that covers them."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    wanted = sorted(set(names))
    stamp = directory / "names.txt"
    if cert_path.exists() and key_path.exists() and stamp.exists() and stamp.read_text() == "\n".join(wanted):
        return cert_path, key_path

    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in wanted:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stream-assist")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    stamp.write_text("\n".join(wanted))
    return cert_path, key_path


def ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context for the given files; a bad file is a ValueError with a one-line message."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"cannot use TLS certificate {cert} / key {key}: {e}") from None
    return context
