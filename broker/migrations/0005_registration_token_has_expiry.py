from django.db import migrations

from core.dbrules import DatabaseRule


class Migration(migrations.Migration):
    dependencies = [("broker", "0004_gatewayinstance_relay_url")]

    operations = [
        DatabaseRule(
            name=f"hostpool_registration_token_has_expiry_{event.lower()}", table="broker_hostpool", event=event,
            violated_when="(NEW.registration_token_hash = '') <> (NEW.registration_token_expires_at IS NULL)",
            message="a registration token hash and its expiry are set together or not at all",
        )
        for event in ("INSERT", "UPDATE")
    ]
