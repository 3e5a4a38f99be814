from django.db import migrations

from core.dbrules import DatabaseRule

POOL_TYPE = "(SELECT pool_type FROM broker_hostpool WHERE id = NEW.host_pool_id)"


class Migration(migrations.Migration):
    dependencies = [("broker", "0002_initial")]

    operations = [
        DatabaseRule(
            name="hostpool_type_immutable", table="broker_hostpool", event="UPDATE",
            violated_when="NEW.pool_type <> OLD.pool_type",
            message="a host pool type cannot change after it is created",
        ),
        *[
            DatabaseRule(
                name=f"sessionhost_assigned_user_personal_{event.lower()}", table="broker_sessionhost", event=event,
                violated_when=f"NEW.assigned_user_id IS NOT NULL AND {POOL_TYPE} <> 'personal'",
                message="only hosts in a personal host pool have an assigned user",
            )
            for event in ("INSERT", "UPDATE")
        ],
    ]
