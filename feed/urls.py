"""The feed's URLs: the user's page, the JSON feed, the MS-TSWP webfeed, .rdp files, icons, and a desktop in
the browser.

Files are keyed by ``<application group>/<alias>`` (the alias is ``desktop`` for a desktop group's
desktop, the RemoteApp's name otherwise), so a desktop and a RemoteApp can never be confused.
"""
from __future__ import annotations

from django.contrib.auth.views import LogoutView
from django.urls import path, re_path

from feed import views, webclient

app_name = "feed"

# broker.models.name_validator: what application group and RemoteApp names may be.
NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"
KEY = rf"(?P<group>{NAME})/(?P<alias>{NAME})"

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", views.UserLoginView.as_view(), name="login"),
    path("accounts/logout/", LogoutView.as_view(), name="logout"),
    # Windows' default feed path (RADC appends it to a bare host name), and a short one.
    path("RDWeb/Feed/webfeed.aspx", views.WebFeedView.as_view(), name="webfeed"),
    path("feed/webfeed.aspx", views.WebFeedView.as_view(), name="webfeed-short"),
    re_path(rf"^feed/rdp/{KEY}\.rdp$", views.RdpFileView.as_view(), name="rdp"),
    re_path(rf"^feed/icon/{KEY}\.ico$", views.IconView.as_view(), name="icon-ico"),
    re_path(rf"^feed/icon/{KEY}_32x32\.png$", views.IconView.as_view(png32=True), name="icon-png32"),
    path("api/v1/feed/", views.FeedApiView.as_view(), name="api-feed"),
    # A desktop in the browser (feed/webclient.py): the page, its web ticket, what became of its connection.
    re_path(rf"^web/{KEY}/$", webclient.session_page, name="web-session"),
    re_path(rf"^web/{KEY}/ticket/$", webclient.web_ticket, name="web-ticket"),
    re_path(rf"^web/{KEY}/connection/$", webclient.web_connection, name="web-connection"),
]
