import pytest
from django.db import connections

from projections.models import RelatedLink

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])


def test_any_matches_the_ids_given_and_nothing_for_none():
    RelatedLink.objects.bulk_create(
        RelatedLink(source_id=source, target_id=10 + source, partition=0) for source in (1, 2, 3)
    )
    found = RelatedLink.objects.filter(source_id__any={1, 3, 99})
    assert sorted(found.values_list("source_id", flat=True)) == [1, 3]
    assert not RelatedLink.objects.filter(source_id__any=set()).exists()
    assert RelatedLink.objects.filter(target_id__any=[12]).get().source_id == 2


def test_any_sends_one_array_on_postgresql():
    ids = list(range(500))
    sql, params = RelatedLink.objects.filter(source_id__any=ids).query.sql_with_params()
    if connections["read"].vendor == "postgresql":
        assert "= ANY(%s)" in sql
        assert list(params) == [ids]
    else:
        assert " IN (" in sql
        assert len(params) == len(ids)
