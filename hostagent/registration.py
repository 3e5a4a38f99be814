"""Registering a session host: a pool's registration token and a CSR in, a host-agent certificate out.

The token only chooses the pool (the view checks it); from then on the agent authenticates with its
certificate. A token proves nothing about the machine that holds a name, so registering a name the pool
already has is refused (``host_in_use``) while that host's agent holds a valid certificate, unless an
admin marked the host for replacement (SessionHost.mark_for_replacement) or removed it. A host whose
certificate expired or was revoked, or one marked for replacement, is re-bound to the new certificate (a
reinstalled machine) and the old certificate revoked, so the previous installation can no longer connect.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC

from django.db import IntegrityError, transaction

from broker.hostbus import close_host_channel
from broker.models import HostInUse, SessionHost
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
    already has a host of that name that accepts a new registration. Raises RegistrationRefused."""
    if SessionHost.objects.filter(name__iexact=name).exclude(host_pool_id=host_pool_id).exists():
        raise RegistrationRefused(
            "name_taken", f"A session host named {name!r} already belongs to another host pool.", 409
        )
    existing = (SessionHost.objects.select_related("certificate")
                .filter(host_pool_id=host_pool_id, name__iexact=name).first())
    if existing is not None and not existing.accepts_registration():
        # Refused before anything is issued; accept_registration decides again under the row lock.
        raise _in_use(HostInUse(existing.name))
    try:
        certificate = ca.issue_from_csr(csr_pem.encode(), CertificatePurpose.HOST_AGENT, common_name=name)
    except ca.CSRRejected as exc:
        raise RegistrationRefused("csr_rejected", str(exc), 400) from None
    except ca.CAError as exc:
        log.error("cannot issue host-agent certificates: %s", exc)
        raise RegistrationRefused("ca_unavailable", str(exc), 503) from None
    previous, rebound = None, False
    try:
        with transaction.atomic():
            host = (SessionHost.objects.select_for_update(of=("self",)).select_related("marked_for_replacement_by")
                    .filter(host_pool_id=host_pool_id, name__iexact=name).first())
            if host is None:
                host = SessionHost.objects.create(host_pool_id=host_pool_id, name=name, certificate=certificate)
            else:
                marked = _marked_by(host)
                previous, rebound = host.accept_registration(certificate), True
                if previous is not None:
                    ca.revoke(previous, "Replaced by a new registration of the host" + marked + ".")
    except HostInUse as exc:
        # Another registration of this name took the host (and its mark) first.
        ca.revoke(certificate, "Registration refused: the host is in use.")
        raise _in_use(exc) from None
    except IntegrityError:
        # Another registration inserted the name between the check and the insert: in this pool, the
        # host it made is live now; in another pool, the name is theirs.
        ca.revoke(certificate, "Registration failed.")
        if SessionHost.objects.filter(host_pool_id=host_pool_id, name__iexact=name).exists():
            raise _in_use(HostInUse(name)) from None
        raise RegistrationRefused(
            "name_taken", f"A session host named {name!r} already belongs to another host pool.", 409
        ) from None
    if previous is not None:
        # The old installation's channel used the certificate just revoked.
        transaction.on_commit(lambda: close_host_channel(
            host.pk, hostchannel.CLOSE_CREDENTIALS_SUPERSEDED, "The host was registered again."
        ))
    log.info("session host %s %s in pool %s with certificate %s", name,
             "re-registered" if rebound else "registered", host_pool_id, certificate.serial_number)
    return RegisteredHost(session_host_id=host.pk, certificate_id=certificate.pk, rebound=rebound)


def _in_use(exc: HostInUse) -> RegistrationRefused:
    return RegistrationRefused("host_in_use", str(exc), 409)


def _marked_by(host: SessionHost) -> str:
    """Who allowed the replacement, for the old certificate's revocation reason (the audit trail that
    stays once the mark is used up)."""
    if not host.is_marked_for_replacement:
        return ""
    who = host.marked_for_replacement_by.get_username() if host.marked_for_replacement_by else "a deleted user"
    return f", marked for replacement by {who} at {host.marked_for_replacement_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
