"""Create this installation's certificate authority once, or adopt an existing one from files."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core import ca


class Command(BaseCommand):
    help = (
        "Create the root CA in DATA_DIR/ca/ (once; running it again only reports the CA), "
        "or adopt an existing CA with --cert and --key."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--cert", type=Path, help="PEM certificate of an existing CA to adopt")
        parser.add_argument("--key", type=Path, help="its unencrypted PEM private key")
        parser.add_argument("--common-name", help="common name of a new CA (default: WVD Root CA)")

    def handle(self, *args, cert: Path | None, key: Path | None, common_name: str | None, **options) -> None:
        if (cert is None) != (key is None):
            raise CommandError("Give both --cert and --key to adopt a CA.")
        if cert is not None and common_name is not None:
            raise CommandError("--common-name applies to a new CA; an adopted CA keeps its own name.")
        try:
            if cert is None and ca.ca_exists():
                record = ca.ca_record()
                self.stdout.write(f"A certificate authority already exists: {self._describe(record)}")
                return
            if cert is not None:
                already = ca.ca_exists()
                record = ca.init_ca(cert_path=cert, key_path=key)
                verb = "This CA is already in use" if already else "Adopted the certificate authority"
            else:
                record = ca.init_ca(common_name=common_name or "WVD Root CA")
                verb = "Created the certificate authority"
        except ca.CAError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"{verb}: {self._describe(record)}"))
        self.stdout.write("Clients and hosts can download it from /ca.pem.")

    @staticmethod
    def _describe(record) -> str:
        return (f"{record.subject}, valid until {record.not_after:%Y-%m-%d}, "
                f"SHA-256 fingerprint {ca.format_fingerprint(record.fingerprint_sha256)}")
