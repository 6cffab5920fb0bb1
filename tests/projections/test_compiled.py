import random

import psycopg
import pytest
from django.db import connections, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from catalog.models import Product
from eventstore.databases import READ_DB
from projections.compiled import CompiledQuery
from projections.models import Checkpoint, ProductFacts, ProductReadModel
from projections.projectors.product_store import _locked_listings
from projections.registry import project_all
from tests.projections.history import seed_catalog
from tests.projections.processes import database_url

# Elsewhere a CompiledQuery is the ORM queryset itself.
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, databases=["default", "read"]),
]


def _fields(instance):
    return {
        field.attname: getattr(instance, field.attname)
        for field in type(instance)._meta.concrete_fields
    }


@pytest.fixture
def projected(settings):
    settings.PROJECTION_PARTITIONS = 4
    seed_catalog(random.Random(3), products=12)
    project_all()
    return sorted(Product.objects.values_list("pk", flat=True))


def test_rows_are_the_orms_whatever_the_values_of_each_call(projected):
    """Instances with their JSON, decimals and dates converted as the ORM
    converts them; tuples and flat values for values_list."""
    rows = CompiledQuery(READ_DB, lambda ids: ProductReadModel.objects.filter(product_id__any=ids))
    facts = CompiledQuery(
        READ_DB,
        lambda name, owners, partitions, ids: ProductFacts.objects.filter(
            projector=name,
            partition__any=owners,
            partition=F("product_id") % partitions,
            product_id__any=ids,
        ).order_by("product_id"),
    )
    names = CompiledQuery(
        READ_DB,
        lambda ids: (
            ProductReadModel.objects.filter(pk__any=ids)
            .order_by("product_id")
            .values_list("product_id", "name", "related_products")
        ),
    )
    flat = CompiledQuery(
        READ_DB,
        lambda ids: (
            ProductReadModel.objects.filter(pk__any=ids)
            .order_by("-product_id")
            .values_list("price", flat=True)
        ),
    )
    for ids in (projected[:3], projected[5:6], projected, {projected[-1], 10**12}):
        orm_rows = ProductReadModel.objects.filter(product_id__any=ids)
        assert sorted(map(_fields, rows(ids=ids)), key=str) == sorted(
            map(_fields, orm_rows), key=str
        )
        queryset = ProductReadModel.objects.filter(pk__any=ids).order_by("product_id")
        listed = queryset.values_list("product_id", "name", "related_products")
        assert names(ids=ids) == list(listed)
        assert flat(ids=ids) == list(queryset.reverse().values_list("price", flat=True))
        for owners in ([0, 1], [2, 3], [0, 1, 2, 3]):
            expected = ProductFacts.objects.filter(
                projector="products",
                partition__in=owners,
                partition=F("product_id") % 4,
                product_id__in=ids,
            ).order_by("product_id")
            found = facts(name="products", owners=owners, partitions=4, ids=ids)
            assert list(map(_fields, found)) == list(map(_fields, expected))
    assert rows(ids=[]) == []


def test_a_constant_of_the_query_stays_what_the_build_says(projected):
    owned_by_two = CompiledQuery(
        READ_DB,
        lambda name: Checkpoint.objects.filter(projector=name, partition=2).values_list(
            "partition", flat=True
        ),
    )
    assert owned_by_two(name="products") == [2]
    assert owned_by_two(name="sellers") == []


def test_the_query_is_built_once_and_each_call_is_one_statement(projected):
    builds = []

    def build(ids):
        builds.append(ids)
        return ProductReadModel.objects.filter(product_id__any=ids)

    rows = CompiledQuery(READ_DB, build)
    for ids in (projected[:2], projected[2:5], projected[7:8]):
        with CaptureQueriesContext(connections[READ_DB]) as queries:
            assert {row.pk for row in rows(ids=ids)} == set(ids)
        assert len(queries) == 1
    assert len(builds) == 2  # twice with stand-ins, then never again


def test_a_query_whose_shape_follows_its_values_is_refused(projected):
    """``__in`` spells each id as a parameter of its own: no one parameter
    can take a list of another length."""
    listed = CompiledQuery(READ_DB, lambda ids: ProductReadModel.objects.filter(pk__in=ids))
    with pytest.raises(ValueError, match="not one argument"):
        listed(ids=projected[:3])
    unused = CompiledQuery(READ_DB, lambda ids, name: ProductReadModel.objects.filter(pk__any=ids))
    with pytest.raises(ValueError, match="name"):
        unused(ids=projected[:3], name="products")


def test_rows_locked_for_update_stay_locked_until_the_transaction_ends(projected):
    """As the ORM's ``select_for_update``: refused outside a transaction,
    every call, not only the one that compiled the query. (The batch's own
    query: the rows it will write, locked in product order.)"""
    with transaction.atomic(using=READ_DB):
        locked = _locked_listings(ids=projected[:2])
        assert [product_id for product_id, _, _ in locked] == projected[:2]
        with (
            psycopg.connect(database_url(READ_DB), autocommit=True) as other,
            pytest.raises(psycopg.errors.LockNotAvailable),
        ):
            other.execute(
                "SELECT 1 FROM projections_productreadmodel WHERE product_id = %s"
                " FOR UPDATE NOWAIT",
                [projected[0]],
            )
    with pytest.raises(transaction.TransactionManagementError):
        _locked_listings(ids=projected[:2])
    with pytest.raises(TypeError):
        CompiledQuery(READ_DB, lambda name: Checkpoint.objects.filter(projector=name))(name=None)
