"""The upgrade to identity per submitter (verifier 0008) on a database that already holds declarations.

Existing items get their batch's creator as submitter and the hash of their content, the same hash the
importer computes, so a re-submission after the upgrade is recognised as identical or as a new version.
"""
from __future__ import annotations

from decimal import Decimal

import pytest

from tests.support.services import manage, service_environment
from verifier.importing import content_hash

pytestmark = pytest.mark.slow


def test_the_identity_migration_fills_submitters_and_content_hashes_of_existing_items(own_postgres, own_redis,
                                                                                       own_double):
    url = own_postgres.create_database("before_identity_upgrade")
    environment = service_environment(database_url=url, broker_url=own_redis.url(),
                                      embedding_base_url=own_double.base_url, embedding_model=own_double.model)
    manage("migrate", "verifier", "0007", "--no-input", environment=environment)
    with own_postgres.connect("before_identity_upgrade") as connection:
        user_id = connection.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, "
            "is_active, date_joined) VALUES ('!', false, 'broker', '', '', '', false, true, now()) RETURNING id"
        ).fetchone()[0]
        batch_id = connection.execute(
            "INSERT INTO verifier_declarationbatch (source, mode, status, file_name, upload_path, is_reference, "
            "rows_read, items_created, duplicates, rows_rejected, failure_reason, created_by_id, created_at) "
            "VALUES ('api', 'check', 'done', '', '', false, 1, 1, 0, 0, '', %s, now()) RETURNING id", [user_id]
        ).fetchone()[0]
        connection.execute(
            "INSERT INTO verifier_declarationitem (batch_id, external_id, item_no, identity_key, product_name, spec, "
            "description_raw, description_normalized, declared_code, origin, quantity, unit, value, currency, "
            "language, extra, status, attempts, last_error, created_at) VALUES (%s, 'D-1', '1', 'k1', '', '', "
            "'green tea', '', '090210', 'CN', 5, 'kg', 12.5, 'USD', 'en', '{}', 'verified', 0, '', now())",
            [batch_id])

    manage("migrate", "--no-input", environment=environment)

    with own_postgres.connect("before_identity_upgrade") as connection:
        submitter, version, digest = connection.execute(
            "SELECT submitter_id, version, content_hash FROM verifier_declarationitem").fetchone()
    assert (submitter, version) == (user_id, 1)
    assert digest == content_hash({"description_raw": "green tea", "product_name": "", "spec": "",
                                   "declared_code": "090210", "origin": "CN", "quantity": Decimal("5.0000"),
                                   "unit": "kg", "value": Decimal("12.50"), "currency": "USD"})
