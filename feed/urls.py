"""The feed's non-API URLs: the user's page, the MS-TSWP webfeed, .rdp files and icons."""
urlpatterns: list = []
