"""GET /feed/icon/<group>/<alias>.ico and _32x32.png: the resource's icon, or our default."""
from __future__ import annotations

import io

from PIL import Image

from feed import icons
from feed.models import Desktop
from feed.resources import icon_path, resource_for


def _png(size: tuple[int, int], colour=(200, 30, 30, 255)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_without_an_icon_the_defaults_are_served(member_api, desktop_group, apps_through_group):
    assert member_api.get("/feed/icon/dag-a/desktop_32x32.png").content == icons.default_icon_png_32("desktop")
    assert member_api.get("/feed/icon/rag-a/notepad.ico").content == icons.default_icon_ico("remoteapp")


def test_an_uploaded_icon_is_served_as_ico_and_as_a_32_pixel_png(member_api, desktop_group):
    desktop = Desktop.objects.get(application_group=desktop_group)
    desktop.icon, desktop.icon_content_type = _png((64, 64)), "image/png"
    desktop.save()

    ico = member_api.get("/feed/icon/dag-a/desktop.ico")
    png = member_api.get("/feed/icon/dag-a/desktop_32x32.png")

    assert (ico.status_code, ico["Content-Type"]) == (200, "image/x-icon")
    assert _image(ico.content).format == "ICO"
    assert (png.status_code, png["Content-Type"]) == (200, "image/png")
    picture = _image(png.content)
    assert picture.size == (32, 32)
    assert picture.convert("RGBA").getpixel((16, 16)) == (200, 30, 30, 255)
    assert png["Cache-Control"] == "private, max-age=86400"


def test_a_changed_icon_gets_a_new_url_and_new_bytes(member, member_api, desktop_group):
    before_url = icon_path(resource_for(member, "dag-a", "desktop"), png32=True)
    before = member_api.get(before_url).content
    desktop = Desktop.objects.get(application_group=desktop_group)
    desktop.icon = _png((32, 32), (10, 200, 10, 255))
    desktop.save()

    after_url = icon_path(resource_for(member, "dag-a", "desktop"), png32=True)

    assert after_url != before_url
    assert member_api.get(after_url).content != before


def test_a_stored_icon_that_is_not_an_image_falls_back_to_the_default(member_api, desktop_group):
    Desktop.objects.filter(application_group=desktop_group).update(icon=b"GIF89a not an icon")

    response = member_api.get("/feed/icon/dag-a/desktop_32x32.png")

    assert response.content == icons.default_icon_png_32("desktop")


def test_another_users_icon_is_404(outsider_api, desktop_group):
    assert outsider_api.get("/feed/icon/dag-a/desktop.ico").status_code == 404


def test_anonymous_icon_requests_get_401(anonymous_api, desktop_group):
    assert anonymous_api.get("/feed/icon/dag-a/desktop.ico").status_code == 401
