"""Host-agent certificates on the server side: authenticating an agent and renewing its certificate.

Both places a session host's agent reaches the control plane use it: the host channel's consumer
(hostagent/consumers.py) and the gateway's agent link (gateway/transports/agentlink.py). An agent is
accepted when the presented certificate verifies with our CA for the host-agent purpose (chains,
valid, recorded, not revoked), the signature proves possession of its key for this connection's
nonce, and it is the certificate bound to a session host of that name. During a renewal
the host is bound to the new certificate as soon as it is issued, and the one it renews stays
accepted until the agent has proved it switched (or it expires), so a crash halfway through never
locks the agent out.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from cryptography import x509
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from broker.models import SessionHost
from core import ca
from core.choices import CertificatePurpose
from core.models import Certificate
from wire import proof

log = logging.getLogger(__name__)


class HostAuthenticationRefused(Exception):
    """The agent did not prove who it is; the message is a sentence for the agent's log."""


class RenewalRefused(Exception):
    """A renewal CSR was refused; the message is a sentence for the agent and the admin."""


@dataclass(frozen=True)
class AuthenticatedHost:
    session_host_id: int
    name: str
    certificate_id: int


def authenticate_host(certificate_pem: str, nonce: bytes, signature: bytes) -> AuthenticatedHost:
    """Check an agent's hello; raises HostAuthenticationRefused."""
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode("utf-8", "replace"))
    except ValueError:
        raise HostAuthenticationRefused("The certificate is not a valid PEM certificate.") from None
    # The signature first: it costs no database query, and garbage stops here.
    if not proof.verify_challenge(certificate, nonce, signature):
        raise HostAuthenticationRefused("The signature does not prove possession of the certificate's key.")
    try:
        record = ca.verify_certificate(certificate_pem.encode(), CertificatePurpose.HOST_AGENT)
    except ca.CertificateRefused as exc:
        raise HostAuthenticationRefused(str(exc)) from None
    bound = Q(certificate_id=record.pk)
    if record.renewed_by_id is not None:
        bound |= Q(certificate_id=record.renewed_by_id)  # renewal issued, agent not switched yet
    host = SessionHost.objects.filter(bound).only("pk", "name", "certificate_id").first()
    if host is None:
        raise HostAuthenticationRefused(
            "The certificate is not bound to any session host; register the host again."
        )
    if host.name.lower() != record.common_name.lower():
        raise HostAuthenticationRefused(f"The certificate names {record.common_name!r}, not this host.")
    if host.certificate_id == record.pk:
        # The agent uses its newest certificate: the one it renewed has done its job.
        for previous in Certificate.objects.filter(renewed_by=record, revoked_at__isnull=True):
            ca.revoke(previous, "Superseded by renewal.")
    else:
        # The agent never stored the certificate issued for it: that renewal is void.
        abandon_renewal(host.pk, host.certificate_id, record.pk)
    return AuthenticatedHost(session_host_id=host.pk, name=host.name, certificate_id=record.pk)


def issue_renewed_certificate(host_id: int, csr_pem: str) -> tuple[str, str, int, int | None]:
    """Issue the host's next certificate from the agent's CSR and bind it to the host.

    Returns (certificate PEM, CA PEM, new certificate id, id of the certificate it renews).
    """
    host = SessionHost.objects.filter(pk=host_id).select_related("certificate").first()
    if host is None:
        raise RenewalRefused("The session host no longer exists.")
    previous = host.certificate
    try:
        with transaction.atomic():
            record = ca.issue_from_csr(csr_pem.encode(), CertificatePurpose.HOST_AGENT, common_name=host.name,
                                       renews=previous)
            SessionHost.objects.filter(pk=host_id).update(certificate=record)
    except ca.CAError as exc:
        raise RenewalRefused(str(exc)) from None
    log.info("issued renewed host-agent certificate %s for host %s", record.serial_number, host.name)
    return record.pem, ca.ca_certificate_pem().decode(), record.pk, previous.pk if previous else None


def complete_renewal(host_id: int, new_certificate_id: int, previous_certificate_id: int | None) -> None:
    """The agent stored its new certificate: the previous one is no longer needed."""
    previous = Certificate.objects.filter(pk=previous_certificate_id, revoked_at__isnull=True).first()
    if previous is not None and previous.renewed_by_id == new_certificate_id:
        ca.revoke(previous, "Superseded by renewal.")


def abandon_renewal(host_id: int, new_certificate_id: int, previous_certificate_id: int | None) -> None:
    """The agent could not store its new certificate: rebind the previous one, revoke the new one."""
    new = Certificate.objects.filter(pk=new_certificate_id).first()
    with transaction.atomic():
        if previous_certificate_id is not None:
            SessionHost.objects.filter(pk=host_id, certificate_id=new_certificate_id).update(
                certificate_id=previous_certificate_id
            )
            Certificate.objects.filter(pk=previous_certificate_id, renewed_by_id=new_certificate_id).update(
                renewed_by=None
            )
        if new is not None:
            ca.revoke(new, "The agent could not store it.")


# --- the host's RDP certificate (what clients check on the nested TLS of step 11) ---------------------


def rdp_certificate_names(host: SessionHost) -> list[str]:
    """The names a host's RDP certificate carries: what clients check it against. With a gateway the
    client checks the ``full address`` of its .rdp file, the pool's name; connecting directly, the
    host's own name. A pool name that cannot be a certificate name (an underscore) is left out."""
    names = [host.name]
    pool_name = host.host_pool.name
    if ca.is_certificate_name(pool_name) and pool_name.lower() != host.name.lower():
        names.append(pool_name)
    elif pool_name.lower() != host.name.lower():
        log.warning("host %s: its pool's name %r cannot be a certificate name; clients connecting through the "
                    "gateway will not accept the host's RDP certificate", host.name, pool_name)
    return names


def issue_rdp_certificate(host_id: int, csr_pem: str) -> tuple[str, str]:
    """Issue a host-rdp certificate for the key in the agent's CSR (common name: the host's name; the
    names from ``rdp_certificate_names``). Returns (certificate PEM, CA PEM); raises RenewalRefused."""
    host = SessionHost.objects.filter(pk=host_id).select_related("host_pool", "rdp_certificate").first()
    if host is None:
        raise RenewalRefused("The session host no longer exists.")
    try:
        record = ca.issue_from_csr(csr_pem.encode(), CertificatePurpose.HOST_RDP, common_name=host.name,
                                   dns_names=rdp_certificate_names(host), renews=host.rdp_certificate)
    except ca.CAError as exc:
        raise RenewalRefused(str(exc)) from None
    log.info("issued host-rdp certificate %s for host %s (valid until %s)", record.serial_number, host.name,
             record.not_after.isoformat())
    return record.pem, ca.ca_certificate_pem().decode()


def record_rdp_certificate(host_id: int, presented_sha256: str, detail: str) -> Certificate | None:
    """What the host's RDP listener presents, as its agent saw it: the fingerprint (empty when the agent
    could not tell) and a sentence. Returns the certificate when it is one our CA issued to this host, for
    the host-rdp purpose, valid and not revoked; the ones it renewed are revoked then."""
    host = SessionHost.objects.filter(pk=host_id).only("pk", "name").first()
    if host is None:
        return None
    now = timezone.now()
    record = None
    if presented_sha256:
        record = Certificate.objects.filter(
            fingerprint_sha256=presented_sha256, purpose=CertificatePurpose.HOST_RDP, common_name__iexact=host.name,
            revoked_at__isnull=True, not_before__lte=now, not_after__gt=now,
        ).first()
        if record is None:
            detail = f"The RDP listener presents a certificate this CA did not issue to this host. {detail}"
    SessionHost.objects.filter(pk=host_id).update(
        rdp_certificate=record, rdp_certificate_sha256=presented_sha256, rdp_certificate_detail=detail.strip()[:300],
        rdp_certificate_checked_at=now,
    )
    if record is not None:
        for previous in Certificate.objects.filter(renewed_by=record, revoked_at__isnull=True):
            ca.revoke(previous, "Superseded by renewal.")
    return record
