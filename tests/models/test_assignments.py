"""Assignments: a user or a group (never both, never neither), each at most once per application group."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from feed.models import Assignment
from tests.models.refusals import assert_invalid, refused_by_database

pytestmark = pytest.mark.django_db

XOR_MESSAGE = "Assign either a user or a group, not both or neither."


@pytest.fixture
def staff_group(db):
    return Group.objects.create(name="Finance")


class TestAUserXorAGroup:
    def test_the_model_refuses_neither(self, remoteapp_group):
        assert_invalid(Assignment(application_group=remoteapp_group), XOR_MESSAGE)

    def test_the_model_refuses_both(self, remoteapp_group, member, staff_group):
        assert_invalid(Assignment(application_group=remoteapp_group, user=member, group=staff_group), XOR_MESSAGE)

    @pytest.mark.parametrize("who", ["user", "group"])
    def test_the_model_accepts_one_of_them(self, remoteapp_group, member, staff_group, who):
        assignee = {"user": member, "group": staff_group}[who]
        Assignment(application_group=remoteapp_group, **{who: assignee}).full_clean()

    def test_the_database_refuses_neither(self, remoteapp_group):
        with refused_by_database("assignment_user_xor_group"):
            Assignment.objects.bulk_create([Assignment(application_group=remoteapp_group)])

    def test_the_database_refuses_both(self, remoteapp_group, member, staff_group):
        with refused_by_database("assignment_user_xor_group"):
            Assignment.objects.bulk_create(
                [Assignment(application_group=remoteapp_group, user=member, group=staff_group)]
            )

    def test_the_database_refuses_adding_a_group_to_a_user_assignment(self, desktop_group, staff_group):
        with refused_by_database("assignment_user_xor_group"):
            Assignment.objects.filter(application_group=desktop_group).update(group=staff_group)


class TestAnAssignmentIsUnique:
    def test_the_model_refuses_the_same_user_twice(self, desktop_group, member):
        assert_invalid(Assignment(application_group=desktop_group, user=member),
                       "This user is already assigned to the group.")

    def test_the_model_refuses_the_same_group_twice(self, desktop_group, staff_group):
        Assignment.objects.create(application_group=desktop_group, group=staff_group)
        assert_invalid(Assignment(application_group=desktop_group, group=staff_group),
                       "This group is already assigned to the group.")

    def test_the_database_refuses_the_same_user_twice(self, desktop_group, member):
        with refused_by_database("assignment_unique_user|user_id"):
            Assignment.objects.bulk_create([Assignment(application_group=desktop_group, user=member)])

    def test_the_database_refuses_the_same_group_twice(self, desktop_group, staff_group):
        Assignment.objects.create(application_group=desktop_group, group=staff_group)
        with refused_by_database("assignment_unique_group|group_id"):
            Assignment.objects.bulk_create([Assignment(application_group=desktop_group, group=staff_group)])

    def test_the_same_user_may_be_assigned_to_another_group(self, desktop_group, remoteapp_group, member):
        assignment = Assignment(application_group=remoteapp_group, user=member)
        assignment.full_clean()
        assignment.save()

    def test_a_user_and_a_group_may_both_be_assigned(self, desktop_group, staff_group):
        assignment = Assignment(application_group=desktop_group, group=staff_group)
        assignment.full_clean()
        assignment.save()
        assert desktop_group.assignments.count() == 2
