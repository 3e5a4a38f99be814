"""The API's JSON parser: DRF's, answering 400 to JSON nested too deep instead of a 500.

Python's decoder raises RecursionError (not ValueError) for a body like 100,000 ``[``, which DRF's
parser lets through; a client must not be able to cause a server error with a 100 kB request.
(The body's size is bounded before parsing: Django refuses one over DATA_UPLOAD_MAX_MEMORY_SIZE.)
"""
from __future__ import annotations

import logging

from rest_framework import exceptions, parsers

log = logging.getLogger(__name__)


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            request = (parser_context or {}).get("request")
            log.info("refused JSON nested too deep on %s", request and request.path)
            raise exceptions.ParseError("JSON parse error - nested too deep.") from None
