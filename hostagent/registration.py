"""Registering a session host: a pool's registration token and a CSR in, a host-agent certificate out.

The token only chooses the pool (the view checks it); from then on the agent authenticates with its
certificate. Registering a name the pool already has re-binds that host to the new certificate (a
reinstalled machine) and revokes the old one, so the previous installation can no longer connect.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from broker.hostbus import close_host_channel
from broker.models import SessionHost
from core import ca
from core.choices import CertificatePurpose
from wire import hostchannel

log = logging.getLogger(__name__)

# A session host's name is its certificate's common name: a host name of at most 64 characters
# (X.509's limit for a common name).
HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
MAX_HOST_NAME = 64


class RegistrationRefused(Exception):
    """Registration cannot go on; ``code`` is stable for programs, the message a sentence for people."""

    def __init__(self, code: str, message: str, http_status: int) -> None:
        super().__init__(message)
        self.code, self.http_status = code, http_status


@dataclass(frozen=True)
class RegisteredHost:
    session_host_id: int
    certificate_id: int
    rebound: bool


def register_session_host(host_pool_id: int, name: str, csr_pem: str) -> RegisteredHost:
    """Issue the host's certificate from its CSR and create the host, or re-bind it when the pool
    already has a host of that name. Raises RegistrationRefused."""
    if SessionHost.objects.filter(name__iexact=name).exclude(host_pool_id=host_pool_id).exists():
        raise RegistrationRefused(
            "name_taken", f"A session host named {name!r} already belongs to another host pool.", 409
        )
    try:
        certificate = ca.issue_from_csr(csr_pem.encode(), CertificatePurpose.HOST_AGENT, common_name=name)
    except ca.CSRRejected as exc:
        raise RegistrationRefused("csr_rejected", str(exc), 400) from None
    except ca.CAError as exc:
        log.error("cannot issue host-agent certificates: %s", exc)
        raise RegistrationRefused("ca_unavailable", str(exc), 503) from None
    previous = None
    try:
        with transaction.atomic():
            host = (SessionHost.objects.select_for_update(of=("self",)).select_related("certificate")
                    .filter(host_pool_id=host_pool_id, name__iexact=name).first())
            if host is None:
                host = SessionHost.objects.create(host_pool_id=host_pool_id, name=name, certificate=certificate)
            else:
                previous = host.certificate
                SessionHost.objects.filter(pk=host.pk).update(certificate=certificate)
                if previous is not None:
                    ca.revoke(previous, "Replaced by a new registration of the host.")
    except IntegrityError:
        # Another pool took the name between the check and the insert.
        ca.revoke(certificate, "Registration failed.")
        raise RegistrationRefused(
            "name_taken", f"A session host named {name!r} already belongs to another host pool.", 409
        ) from None
    if previous is not None:
        # The old installation's channel used the certificate just revoked.
        transaction.on_commit(lambda: close_host_channel(
            host.pk, hostchannel.CLOSE_CREDENTIALS_SUPERSEDED, "The host was registered again."
        ))
    log.info("session host %s %s in pool %s with certificate %s", name,
             "re-registered" if previous is not None else "registered", host_pool_id, certificate.serial_number)
    return RegisteredHost(session_host_id=host.pk, certificate_id=certificate.pk, rebound=previous is not None)
