"""Icons are checked when a Desktop or RemoteApp is saved through the model layer."""
from __future__ import annotations

import io

import pytest
from django.core.exceptions import ValidationError
from PIL import Image

from feed.models import RemoteApp

pytestmark = pytest.mark.django_db


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (32, 32), (0, 120, 200, 255)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_png_icon_is_accepted_and_its_type_recorded(remoteapp_group):
    app = RemoteApp(application_group=remoteapp_group, name="calc", friendly_name="Calculator",
                    file_path="/usr/bin/galculator", icon=png_bytes())
    app.full_clean()
    assert app.icon_content_type == "image/png"


def test_an_icon_that_is_not_an_image_is_refused_at_save(remoteapp_group):
    app = RemoteApp(application_group=remoteapp_group, name="calc", friendly_name="Calculator",
                    file_path="/usr/bin/galculator", icon=b"GIF89a not what we take")
    with pytest.raises(ValidationError) as refused:
        app.full_clean()
    assert "icon" in refused.value.message_dict


def test_the_desktop_icon_is_checked_too(desktop_group):
    desktop = desktop_group.desktop
    desktop.icon = b"<svg/>"
    with pytest.raises(ValidationError) as refused:
        desktop.full_clean()
    assert "icon" in refused.value.message_dict
