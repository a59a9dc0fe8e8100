"""Certificates for the TLS tests, made with `cryptography` (installed with asyncua): a CA, a
server certificate for localhost and 127.0.0.1 signed by it, and a client certificate signed by
it, as PEM files in --dir (ca.pem, server.pem, server.key, client.pem, client.key; the keys also
as server-key.pem and client-key.pem), plus DER copies of the certificates (ca.der, server.der,
client.der) for OPC UA.
"""

import argparse
import datetime
import ipaddress
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def certificate(subject_key, subject, issuer_key, issuer, *, ca=False, usage=None, uri=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        # The application URI first: OPC UA stacks read it from the first alternative name.
        alternative = [x509.UniformResourceIdentifier(uri)] if uri else []
        alternative += [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=True, key_encipherment=True, data_encipherment=True,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def write(directory, stem, cert, private_key=None):
    (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / f"{stem}.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    if private_key is not None:
        pem = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        (directory / f"{stem}.key").write_bytes(pem)
        (directory / f"{stem}-key.pem").write_bytes(pem)  # asyncua tells PEM from DER by the name


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--server-uri", default="urn:diode:tests:server")
    parser.add_argument("--client-uri", default="urn:diode-sender")
    args = parser.parse_args()
    directory = pathlib.Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = key()
    ca = certificate(ca_key, name("diode test CA"), ca_key, name("diode test CA"), ca=True)
    write(directory, "ca", ca, ca_key)
    server_key = key()
    server = certificate(
        server_key, name("localhost"), ca_key, ca.subject,
        usage=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], uri=args.server_uri,
    )
    write(directory, "server", server, server_key)
    client_key = key()
    client = certificate(
        client_key, name("diode-sender"), ca_key, ca.subject,
        usage=[ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH], uri=args.client_uri,
    )
    write(directory, "client", client, client_key)


if __name__ == "__main__":
    main()
