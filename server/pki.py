"""The project's own certificate authority, made with ``cryptography``, for the broker's TLS listener.

ECDSA P-256 keys; the CA key never leaves the server's data folder (mode 0600). Leaf certificates carry
the host names and addresses devices use, and are re-issued when those change.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from linecrew.shared.fsutil import atomic_write


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    atomic_write(path, pem, mode=0o600)


def ensure_ca(folder: Path) -> tuple[Path, Path]:
    """Create ``ca.crt``/``ca.key`` once; later calls return the existing pair."""
    crt, key_path = folder / "ca.crt", folder / "ca.key"
    if crt.exists() and key_path.exists():
        return crt, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Linecrew project CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    atomic_write(crt, cert.public_bytes(serialization.Encoding.PEM))
    return crt, key_path


def ensure_server_cert(folder: Path, hostnames: list[str]) -> tuple[Path, Path]:
    """A leaf certificate for the broker, signed by the project CA, covering ``hostnames``."""
    ca_crt, ca_key_path = ensure_ca(folder)
    crt, key_path = folder / "server.crt", folder / "server.key"
    wanted = sorted(set(hostnames))
    if crt.exists() and key_path.exists() and _sans(crt) == wanted:
        return crt, key_path
    ca_cert = x509.load_pem_x509_certificate(ca_crt.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in wanted:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, wanted[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(key_path, key)
    atomic_write(crt, cert.public_bytes(serialization.Encoding.PEM))
    return crt, key_path


def _sans(crt: Path) -> list[str]:
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = [str(v) for v in ext.get_values_for_type(x509.DNSName)]
    names += [str(v) for v in ext.get_values_for_type(x509.IPAddress)]
    return sorted(names)
