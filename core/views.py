"""Public pages of the control plane's core."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from core import ca


@require_safe
def ca_certificate(request: HttpRequest) -> HttpResponse:
    """The root CA certificate in PEM. Public on purpose: clients and hosts import it to trust the
    gateway's, the hosts' and the feed signer's certificates, and a certificate holds no secret."""
    try:
        pem = ca.ca_certificate_pem()
    except ca.CAError:
        return HttpResponse("No certificate authority is set up yet (python manage.py initca).\n",
                            status=404, content_type="text/plain; charset=utf-8")
    response = HttpResponse(pem, content_type="application/x-pem-file")
    response["Content-Disposition"] = 'attachment; filename="wvd-ca.pem"'
    # Short: after an operator adopts another CA, clients should see it soon.
    response["Cache-Control"] = "public, max-age=300"
    return response
