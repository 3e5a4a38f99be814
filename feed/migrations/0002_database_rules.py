from django.db import migrations

from core.dbrules import DatabaseRule

GROUP_TYPE = "(SELECT group_type FROM feed_applicationgroup WHERE id = NEW.application_group_id)"
POOL_TYPE = "(SELECT pool_type FROM broker_hostpool WHERE id = NEW.host_pool_id)"


def both(name: str, table: str, violated_when: str, message: str) -> list[DatabaseRule]:
    return [
        DatabaseRule(name=f"{name}_{event.lower()}", table=table, event=event,
                     violated_when=violated_when, message=message)
        for event in ("INSERT", "UPDATE")
    ]


class Migration(migrations.Migration):
    dependencies = [("feed", "0001_initial"), ("broker", "0003_database_rules")]

    operations = [
        DatabaseRule(
            name="applicationgroup_type_immutable", table="feed_applicationgroup", event="UPDATE",
            violated_when="NEW.group_type <> OLD.group_type",
            message="an application group type cannot change after it is created",
        ),
        *both("applicationgroup_remoteapp_pooled", "feed_applicationgroup",
              f"NEW.group_type = 'remoteapp' AND {POOL_TYPE} = 'personal'",
              "RemoteApp groups can only use a pooled host pool"),
        *both("desktop_in_desktop_group", "feed_desktop", f"{GROUP_TYPE} <> 'desktop'",
              "a Desktop belongs to a desktop application group"),
        *both("remoteapp_in_remoteapp_group", "feed_remoteapp", f"{GROUP_TYPE} <> 'remoteapp'",
              "RemoteApps belong to a RemoteApp application group"),
    ]
