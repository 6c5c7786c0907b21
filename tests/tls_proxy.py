"""A TLS front for moto, for the HTTPS test (`enqueue::over_https_with_the_systems_trust_store`).

Makes a CA and a certificate for 127.0.0.1 signed by it (with the `cryptography` package moto
already needs), writes the CA to DIR/ca.pem, then accepts TLS on PORT and forwards each
connection's plain bytes to moto on UPSTREAM. Every completed handshake adds a line to
DIR/handshakes, so the test can tell its client really spoke TLS.

Usage: python tests/tls_proxy.py DIR PORT UPSTREAM
"""

import datetime
import ipaddress
import os
import socket
import ssl
import sys
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def certificate(subject, issuer, key, signer, ca):
    now = datetime.datetime.now(datetime.timezone.utc)
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = dict.fromkeys(
            ["content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "encipher_only", "decipher_only"], False)
        b = b.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, **usage),
            critical=True)
    else:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return b.sign(signer, hashes.SHA256())


def pem(obj):
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pump(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(conn, context, upstream, log):
    try:
        tls = context.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError):
        conn.close()
        return
    with open(log, "a") as f:
        f.write("handshake\n")
    server = socket.create_connection(("127.0.0.1", upstream))
    threading.Thread(target=pump, args=(server, tls), daemon=True).start()
    pump(tls, server)


def main():
    out, port, upstream = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("qp test CA", "qp test CA", ca_key, ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = certificate("127.0.0.1", "qp test CA", key, ca_key, False)
    for name, data in [("leaf.pem", pem(leaf)), ("leaf.key", pem(key))]:
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(out, "leaf.pem"), os.path.join(out, "leaf.key"))
    listener = socket.create_server(("127.0.0.1", port))
    # Written last: its presence says the proxy is listening.
    with open(os.path.join(out, "ca.pem.tmp"), "wb") as f:
        f.write(pem(ca))
    os.rename(os.path.join(out, "ca.pem.tmp"), os.path.join(out, "ca.pem"))
    log = os.path.join(out, "handshakes")
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn, context, upstream, log), daemon=True).start()


main()
