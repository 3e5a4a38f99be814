"""Proof of possession of the agent's key: a signature over the server's nonce.

Used by the agent (to sign) and the consumer (to verify); no Django. The signed bytes bind a fixed
context string (so the signature cannot be reused for another purpose), the nonce of this one
connection (so it cannot be replayed on another connection) and the certificate presented (so it
cannot be moved to another certificate with the same key).
"""
from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

CONTEXT = b"wvd-hostagent-auth-v1\x00"


def signed_bytes(nonce: bytes, certificate: x509.Certificate) -> bytes:
    fingerprint = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()
    return CONTEXT + nonce + fingerprint


def sign_challenge(private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, nonce: bytes,
                   certificate: x509.Certificate) -> bytes:
    """The agent's answer to a challenge."""
    data = signed_bytes(nonce, certificate)
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    raise TypeError("the agent key must be an EC or RSA key")


def verify_challenge(certificate: x509.Certificate, nonce: bytes, signature: bytes) -> bool:
    """True when ``signature`` is the certificate's key signing this nonce for this certificate."""
    data = signed_bytes(nonce, certificate)
    public_key = certificate.public_key()
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True
