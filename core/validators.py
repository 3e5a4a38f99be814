"""Text that ends up in files other programs read (.rdp settings, the MS-TSWP feed, download names) must
not carry characters that change how those programs read it: a line break starts a new .rdp setting, most
control characters are not allowed in XML. Refused when saved (models, the API, forms), with a message that
names the problem.
"""
from __future__ import annotations

import re

from django.core.exceptions import ValidationError

# C0 controls but tab, DEL, C1 controls, and the Unicode line and paragraph separators.
_NOT_IN_ONE_LINE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
# The same, but line breaks (CR, LF) are allowed: descriptions.
_NOT_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(value: str) -> None:
    if isinstance(value, str) and _NOT_IN_ONE_LINE.search(value):
        raise ValidationError("Use one line of text, without line breaks or control characters.",
                              code="control_characters")


def plain_text(value: str) -> None:
    if isinstance(value, str) and _NOT_IN_TEXT.search(value):
        raise ValidationError("Remove the control characters (line breaks and tabs are fine).",
                              code="control_characters")
