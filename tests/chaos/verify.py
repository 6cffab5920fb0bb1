"""How every chaos scenario ends: the read models equal the truth."""

import io

from django.core.management import call_command

from tests.projections.history import assert_exact


def assert_no_drift() -> None:
    """Field by field against the truth (with the rows that differ on failure),
    then ``manage.py verify_projections``, which must find no drift either."""
    assert_exact()
    report = io.StringIO()
    call_command("verify_projections", stdout=report)
    assert "No drift." in report.getvalue(), report.getvalue()
