"""Write docs/errors.md from the table of connection error codes in wire/errors.py."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from wire.errors import render_markdown

DEFAULT_PATH = Path(settings.BASE_DIR) / "docs" / "errors.md"


class Command(BaseCommand):
    help = "Generate docs/errors.md from wire/errors.py (with --check: fail if it is out of date)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--output", type=Path, default=DEFAULT_PATH, help=f"default: {DEFAULT_PATH}")
        parser.add_argument("--check", action="store_true", help="write nothing; fail if the file differs")

    def handle(self, *args, output: Path, check: bool, **options) -> None:
        wanted = render_markdown()
        try:
            current = output.read_text(encoding="utf-8") if output.exists() else None
        except OSError as exc:
            raise CommandError(f"cannot read {output}: {exc.strerror}") from None
        if check:
            if current != wanted:
                raise CommandError(f"{output} is out of date: run `python manage.py errors_doc`")
            self.stdout.write(f"{output} is up to date.")
            return
        if current == wanted:
            self.stdout.write(f"{output} is up to date.")
            return
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(wanted, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror}") from None
        self.stdout.write(self.style.SUCCESS(f"Wrote {output}."))
