"""Host pools: create and edit with the model's rules, a registration token shown once with the agent
commands, hosts with status, heartbeat, health and sessions, the drain switch, and marking a host for
replacement."""
from __future__ import annotations

import json

from django.test import Client
from django.urls import reverse
from lxml import html

from broker.models import HostPool, SessionHost
from core.hashing import hash_secret
from tests.hostagent.conftest import eager_tasks, live_host  # noqa: F401  (a registered host)

VALID = {"name": "pool-b", "friendly_name": "Pool B", "description": "", "pool_type": "pooled",
         "load_balancer": "breadth_first", "personal_assignment": "automatic", "max_session_limit": "5",
         "custom_rdp_properties": ""}


def test_an_admin_creates_a_host_pool(staff, db):
    response = staff.post(reverse("portal:pool-create"), VALID)

    pool = HostPool.objects.get(name="pool-b")
    assert response.status_code == 302 and response["Location"] == reverse("portal:pool-detail", args=[pool.pk])
    assert pool.max_session_limit == 5


def test_a_bad_pool_is_refused_with_field_errors_and_keeps_what_was_typed(staff, db):
    data = {**VALID, "name": "bad name!", "friendly_name": "Typed by hand", "max_session_limit": "0",
            "custom_rdp_properties": "not a property"}

    response = staff.post(reverse("portal:pool-create"), data)

    assert response.status_code == 400
    form = response.context["form"]
    assert set(form.errors) == {"name", "max_session_limit", "custom_rdp_properties"}
    doc = html.fromstring(response.content)
    assert doc.get_element_by_id("id_friendly_name").get("value") == "Typed by hand"
    assert doc.get_element_by_id("id_name").get("value") == "bad name!"
    assert doc.get_element_by_id("id_custom_rdp_properties").text_content().strip() == "not a property"
    assert "Use 1-63 letters" in response.content.decode()
    assert not HostPool.objects.filter(friendly_name="Typed by hand").exists()


def test_the_models_own_rules_are_the_forms_rules(staff, db):
    """custom_rdp_properties is checked by HostPool.clean(); names are unique whatever their case."""
    HostPool.objects.create(name="Pool-B")

    response = staff.post(reverse("portal:pool-create"), {**VALID, "custom_rdp_properties": "bogus"})

    errors = response.context["form"].errors
    assert "A host pool with this name already exists." in str(errors)
    assert "custom_rdp_properties" in errors


def test_a_pools_type_cannot_be_changed(staff, estate):
    pool = estate["pool"]

    response = staff.post(reverse("portal:pool-edit", args=[pool.pk]),
                          {**VALID, "name": "pool-a", "pool_type": "personal", "max_session_limit": "3"})

    pool.refresh_from_db()
    assert response.status_code == 302
    assert (pool.pool_type, pool.max_session_limit) == ("pooled", 3)  # the disabled field keeps its value


def test_the_token_is_shown_once_with_its_expiry_and_the_agent_commands(staff, estate):
    pool = estate["pool"]

    response = staff.post(reverse("portal:pool-token", args=[pool.pk]))

    doc = html.fromstring(response.content)
    token = doc.get_element_by_id("registration-token").get("value")
    pool.refresh_from_db()
    assert pool.registration_token_hash == hash_secret(token) and pool.registration_token_valid
    assert "Valid until" in doc.text_content()
    assert doc.get_element_by_id("register-command").text_content() == (
        f"python -m hostagent.agent register --server http://testserver --token {token} --name pool-a-05")
    assert doc.get_element_by_id("run-command").text_content() == "python -m hostagent.agent run"
    assert response["Cache-Control"].startswith("no-store") or "no-store" in response["Cache-Control"]
    assert token not in staff.get(reverse("portal:pool-detail", args=[pool.pk])).content.decode()
    assert token not in str(staff.session.items())


def test_the_token_page_names_the_pool_page_for_its_live_updates(staff, estate):
    response = staff.post(reverse("portal:pool-token", args=[estate["pool"].pk]))

    body = html.fromstring(response.content).xpath("//body")[0]
    assert body.get("data-fragments-url") == reverse("portal:pool-detail", args=[estate["pool"].pk])


def test_a_token_can_be_revoked(staff, estate):
    pool = estate["pool"]
    pool.issue_registration_token()

    staff.post(reverse("portal:pool-token-revoke", args=[pool.pk]))

    pool.refresh_from_db()
    assert pool.registration_token_hash == ""


def test_the_pool_page_shows_each_hosts_status_heartbeat_health_and_sessions(staff, estate):
    doc = html.fromstring(staff.get(reverse("portal:pool-detail", args=[estate["pool"].pk])).content)

    rows = {r.xpath(".//strong")[0].text: r.text_content() for r in doc.xpath("//table[@id='host-table']/tbody/tr")}
    assert list(rows) == ["host-1", "host-2", "host-3", "host-4"]
    assert "Available" in rows["host-1"] and "2 checks pass" in rows["host-1"] and "2 / 2" in rows["host-1"]
    assert "s ago" in rows["host-1"]
    assert "Unavailable" in rows["host-3"] and "1 of 2 failing" in rows["host-3"] and "rdp_listener" in rows["host-3"]
    assert "Needs assistance" in rows["host-4"] and "disk_space" in rows["host-4"]
    assert "Draining" in rows["host-2"] and "Allowed" in rows["host-1"]


def test_the_hosts_table_comes_as_a_json_fragment(staff, estate):
    response = staff.get(reverse("portal:pool-detail", args=[estate["pool"].pk]), {"fragments": "1"})

    fragments = json.loads(response.content)["fragments"]
    assert set(fragments) == {"hosts", "pool-counts"}
    assert "host-4" in fragments["hosts"]


def test_the_drain_switch_turns_drain_mode_on_and_off(staff, estate):
    host = estate["hosts"]["host-1"]
    url = reverse("portal:host-drain", args=[host.pk])
    back = reverse("portal:pool-detail", args=[host.host_pool_id])

    on = staff.post(url, {"allow": "0", "next": back})
    host.refresh_from_db()
    assert (on.status_code, on["Location"], host.allow_new_sessions) == (302, back, False)

    staff.post(url, {"allow": "1"})
    host.refresh_from_db()
    assert host.allow_new_sessions is True


def test_the_drain_switch_refuses_a_missing_choice_and_foreign_return_urls(staff, estate):
    host = estate["hosts"]["host-1"]

    response = staff.post(reverse("portal:host-drain", args=[host.pk]), {"allow": "maybe",
                                                                          "next": "https://evil.example/"})

    host.refresh_from_db()
    assert host.allow_new_sessions is True
    assert response["Location"] == reverse("portal:pool-detail", args=[host.host_pool_id])


def test_the_host_page_shows_health_checks_sessions_and_status_history(staff, estate):
    host = estate["hosts"]["host-3"]
    host.set_status("available", "back")
    host.set_status("unavailable", "gone again")

    doc = html.fromstring(staff.get(reverse("portal:host-detail", args=[host.pk])).content)

    checks = [li.text_content() for li in doc.xpath("//ul[@class='checks']/li")]
    assert "rdp_listener" in checks[0] and "fails (the host takes no sessions)" in checks[0]
    assert "gone again" in doc.text_content()


def test_a_host_deleted_meanwhile_gets_a_clear_page_not_a_500(staff, estate):
    host = estate["hosts"]["host-3"]
    pk = host.pk
    host.delete()

    response = staff.post(reverse("portal:host-drain", args=[pk]), {"allow": "0"})

    assert response.status_code == 404
    assert "This session host no longer exists" in response.content.decode()
    assert staff.get(reverse("portal:host-detail", args=[pk])).status_code == 404


def test_a_pool_deleted_meanwhile_gets_a_clear_page(staff, db):
    pool = HostPool.objects.create(name="short-lived")
    pk = pool.pk
    pool.delete()

    for url in ("portal:pool-detail", "portal:pool-edit"):
        response = staff.get(reverse(url, args=[pk]))
        assert response.status_code == 404 and "This host pool no longer exists" in response.content.decode()
    response = staff.post(reverse("portal:pool-edit", args=[pk]), VALID)
    assert response.status_code == 404
    assert staff.post(reverse("portal:pool-token", args=[pk])).status_code == 404


def test_a_new_host_is_listed_once_it_registers(staff, estate):
    SessionHost.objects.create(host_pool=estate["pool"], name="host-new")

    fragments = json.loads(staff.get(reverse("portal:pool-detail", args=[estate["pool"].pk]),
                                     {"fragments": "1"}).content)["fragments"]

    assert "host-new" in fragments["hosts"]


# --- marking a host for replacement -------------------------------------------------------------------

def replacement_form(page: bytes):
    [form] = html.fromstring(page).xpath("//form[contains(@action, '/replacement/')]")
    return form


def test_the_replacement_button_lets_the_next_registration_take_the_host_over(admin_user, live_host):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    page = browser.get(reverse("portal:host-detail", args=[live_host.host.pk]))
    assert "Refused while the agent's certificate is valid" in html.fromstring(page.content).text_content()
    form = replacement_form(page.content)
    fields = {i.get("name"): i.get("value") for i in form.xpath(".//input")}
    assert fields["mark"] == "1" and fields["csrfmiddlewaretoken"]
    live_host.assert_not_replaced(live_host.register_again())

    response = browser.post(form.get("action"), fields)

    assert (response.status_code, response["Location"]) == (302, reverse("portal:host-detail",
                                                                         args=[live_host.host.pk]))
    host = SessionHost.objects.get(pk=live_host.host.pk)
    assert host.marked_for_replacement_by == admin_user
    shown = html.fromstring(browser.get(response["Location"]).content).text_content()
    assert "Marked for replacement by admin" in shown and "is marked for replacement" in shown
    live_host.assert_replaced_by(live_host.register_again())


def test_the_replacement_button_needs_the_csrf_token(admin_user, live_host):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    response = browser.post(reverse("portal:host-replacement", args=[live_host.host.pk]), {"mark": "1"})
    assert response.status_code == 403
    assert SessionHost.objects.get(pk=live_host.host.pk).marked_for_replacement_at is None


def test_cancelling_the_replacement_refuses_registrations_again(staff, admin_user, live_host):
    live_host.host.mark_for_replacement(by=admin_user)
    page = staff.get(reverse("portal:host-detail", args=[live_host.host.pk])).content
    form = replacement_form(page)
    assert "Cancel replacement" in form.text_content()

    staff.post(form.get("action"), {"mark": "0"})

    assert SessionHost.objects.get(pk=live_host.host.pk).marked_for_replacement_at is None
    live_host.assert_not_replaced(live_host.register_again())


def test_the_replacement_button_refuses_a_missing_choice(staff, live_host):
    staff.post(reverse("portal:host-replacement", args=[live_host.host.pk]), {"mark": "yes"})
    assert SessionHost.objects.get(pk=live_host.host.pk).marked_for_replacement_at is None


def test_the_host_page_says_a_host_without_a_valid_certificate_can_be_registered_again(staff, estate):
    page = staff.get(reverse("portal:host-detail", args=[estate["hosts"]["host-1"].pk])).content
    text = html.fromstring(page).text_content()
    assert "Allowed: no valid agent certificate" in text


def test_a_plain_user_is_refused_the_replacement_button(plain, live_host):
    response = plain.post(reverse("portal:host-replacement", args=[live_host.host.pk]), {"mark": "1"})
    assert response.status_code == 403
    assert SessionHost.objects.get(pk=live_host.host.pk).marked_for_replacement_at is None
    live_host.assert_not_replaced(live_host.register_again())


def test_a_demoted_admin_is_refused_the_replacement_button(django_user_model, live_host, give_role):
    former = django_user_model.objects.create_user("former-admin")
    role = give_role(former, "Session Host Contributor", live_host.host.host_pool)
    browser = Client()
    browser.force_login(former)
    assert browser.get(reverse("portal:host-detail", args=[live_host.host.pk])).status_code == 200
    role.delete()

    response = browser.post(reverse("portal:host-replacement", args=[live_host.host.pk]), {"mark": "1"})

    assert response.status_code == 403
    assert SessionHost.objects.get(pk=live_host.host.pk).marked_for_replacement_at is None
    live_host.assert_not_replaced(live_host.register_again())


def test_the_host_page_shows_whether_clients_can_verify_its_rdp_certificate(staff, estate, settings, tmp_path):
    from broker.hostcertificates import record_rdp_certificate
    from core import ca
    from core.models import Certificate
    from tests.hostagent.conftest import issue_identity

    settings.DATA_DIR = tmp_path
    ca.ensure_ca()
    host = estate["hosts"]["host-3"]
    page = reverse("portal:host-detail", args=[host.pk])

    text = html.fromstring(staff.get(page).content).get_element_by_id("rdp-certificate").text_content()
    assert "no verified RDP certificate" in text and "run it with --rdp-cert and --rdp-key" in text

    _, _, certificate_id = issue_identity(host.name, "host-rdp")
    fingerprint = Certificate.objects.get(pk=certificate_id).fingerprint_sha256
    record_rdp_certificate(host.pk, fingerprint, "Presented by 127.0.0.1:3389.")
    text = html.fromstring(staff.get(page).content).get_element_by_id("rdp-certificate").text_content()
    assert "verified" in text and "issued by this CA" in text and fingerprint in text
