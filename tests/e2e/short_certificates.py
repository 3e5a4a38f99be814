"""Settings for a control plane whose host-rdp certificates live 20 seconds, so a test sees the agent renew
its RDP certificate twice in under a minute (tests/e2e/test_rdp_certificates.py). Everything else is the
product's own settings, read from the same WVD_* variables."""
from datetime import timedelta

from wvdportal.settings import *  # noqa: F403
from wvdportal.settings import CERTIFICATE_LIFETIMES

HOST_RDP_LIFETIME_SECONDS = 20
CERTIFICATE_LIFETIMES = {**CERTIFICATE_LIFETIMES, "host-rdp": timedelta(seconds=HOST_RDP_LIFETIME_SECONDS)}
