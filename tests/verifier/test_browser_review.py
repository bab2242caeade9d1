"""The reviewer's screen for a contradicted declaration, in a real browser (Debian's headless Chromium).

Needs `make browser` (apt-get install chromium chromium-driver); the browser is never downloaded by the
test. The screenshot is written to var/screenshots/.
"""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection, migrations
from django.db.migrations.loader import MigrationLoader
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.support.browser import SCREENSHOTS, headless_chromium
from verifier.models import Review, Verdict

from .factories import make_hs_code, make_item, make_verdict
from .test_admin_review import CONTRADICTION_REASON, hair_dryer_evidence

PASSWORD = "reviewer-password-for-the-browser"
# The data migrations that give the Reviewers group its rights, in the order they run.
REVIEWER_MIGRATIONS = (("verifier", "0003_reviewers_group"), ("faq", "0004_staff_inbox"))


@pytest.fixture
def browser():
    with headless_chromium(window_size="1280,1700") as driver:
        yield driver


@pytest.fixture
def reviewers_group(transactional_db) -> Group:
    """The Reviewers group as the migrations make it.

    A transactional test that ran before this one flushed the tables, and the groups the data migrations
    created with them (serialized_rollback cannot bring them back once such a flush has recreated the
    content types), so their own functions run again, on the models as they stood then.
    """
    if not Group.objects.filter(name="Reviewers").exists():
        loader = MigrationLoader(connection)
        for key in REVIEWER_MIGRATIONS:
            historical_apps = loader.project_state(key, at_end=True).apps
            for operation in loader.get_migration(*key).operations:
                if isinstance(operation, migrations.RunPython):
                    operation.code(historical_apps, None)
    return Group.objects.get(name="Reviewers")


@pytest.mark.django_db(transaction=True)
def test_a_reviewer_sees_the_contradicted_declaration_and_must_choose_an_action(browser, live_server,
                                                                                 django_user_model, reviewers_group):
    reviewer = django_user_model.objects.create_user(username="reviewer", password=PASSWORD, is_staff=True)
    reviewer.groups.add(reviewers_group)
    make_hs_code("030487", "Frozen fillets of tuna")
    make_hs_code("851631", "Hair dryers")
    item = make_item(description_raw="ionic hair dryer 2000 W", declared_code="030487")
    make_verdict(item=item, tier=Verdict.Tier.WARNING, recommended_code="851631", recommended_level=6,
                 confidence=0.5512, margin=0.2504, best_similarity=0.9121, risk=3.0,
                 anomalies=[{"code": "declared_code_contradicted", "reason": CONTRADICTION_REASON}],
                 evidence=hair_dryer_evidence())

    browser.get(f"{live_server.url}/admin/login/?next=/admin/verifier/declarationitem/{item.pk}/change/")
    browser.find_element(By.ID, "id_username").send_keys("reviewer")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

    rows = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in browser.find_elements(By.CSS_SELECTOR, "#level-comparison tbody tr")]
    assert [(row[0], row[1], row[2], row[5], row[6]) for row in rows] == [
        ("chapter", "03", "0%", "85", "60%"),
        ("heading", "0304", "0%", "8516", "70%"),
        ("subheading", "030487", "0%", "851631", "55%"),
    ]
    assert rows[0][3].startswith("Frozen fillets of tuna") and rows[0][4] == "0.83"
    contradiction = browser.find_element(By.ID, "declared_code_contradicted")
    assert "The evidence contradicts the declared code" in contradiction.text
    assert CONTRADICTION_REASON in contradiction.text
    tier = browser.find_element(By.ID, "tier")
    assert tier.text == "Warning" and tier.value_of_css_property("background-color") == "rgba(179, 38, 30, 1)"
    browser.save_screenshot(str(SCREENSHOTS / "review-contradicted-declaration.png"))

    action_menu = Select(browser.find_element(By.ID, "id_action"))
    assert action_menu.first_selected_option.get_attribute("value") == ""
    browser.find_element(By.CSS_SELECTOR, "#review-form input[type=submit]").click()
    # The browser keeps the form (the menu is required): nothing is recorded until an action is chosen.
    assert browser.find_element(By.ID, "id_action").get_attribute("validationMessage")
    assert not Review.objects.exists()

    action_menu.select_by_value(Review.Action.ACCEPT_RECOMMENDATION)
    browser.find_element(By.ID, "id_reason").send_keys("a hair dryer, not fish")
    browser.find_element(By.CSS_SELECTOR, "#review-form input[type=submit]").click()
    assert "Review recorded." in browser.find_element(By.CSS_SELECTOR, ".messagelist").text
    assert Review.objects.get(item=item).to_code == "851631"

    # The staff item page shows the same comparison, and now the review in its audit trail.
    browser.get(f"{live_server.url}/declarations/items/{item.pk}/")
    assert browser.find_element(By.ID, "tier").value_of_css_property("background-color") == "rgba(179, 38, 30, 1)"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#level-comparison tbody tr.disagrees")) == 3
    assert "Accepted the recommendation" in browser.find_element(By.TAG_NAME, "body").text
    browser.save_screenshot(str(SCREENSHOTS / "review-contradicted-declaration-staff-page.png"))
