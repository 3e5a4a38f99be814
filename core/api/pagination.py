from rest_framework.pagination import LimitOffsetPagination


class Pagination(LimitOffsetPagination):
    """``?limit=&offset=`` paging, bounded so one request cannot ask for the whole table."""

    default_limit = 50
    max_limit = 1000
