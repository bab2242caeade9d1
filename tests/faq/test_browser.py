"""The public form in a real browser: Debian's headless Chromium driven through chromedriver (selenium).

Needs `apt-get install -y chromium chromium-driver fonts-noto-cjk` (the browser is never downloaded by the
test; the fonts only make the Chinese text legible in the screenshots).
Screenshots of each state are written to var/screenshots/.
"""
from pathlib import Path

import pytest
from django.conf import settings
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"


@pytest.fixture
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("headless Chromium is missing: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,800"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(2)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def ask(browser, live_server, question: str, contact: str = "") -> None:
    browser.get(f"{live_server.url}/ask/")
    browser.find_element(By.ID, "id_question").send_keys(question)
    if contact:
        browser.find_element(By.ID, "id_contact").send_keys(contact)
    browser.find_element(By.ID, "ask-submit").click()


def wait_for(browser, element_id: str):
    return WebDriverWait(browser, 30).until(expected_conditions.visibility_of_element_located((By.ID, element_id)))


@pytest.mark.django_db(transaction=True)
def test_it_answers_a_paraphrase_suggests_for_a_vague_question_and_escalates(browser, live_server, faq_library):
    ask(browser, live_server, "怎么换绑手机号?")
    answer = wait_for(browser, "answer")
    assert faq_library["phone"].answer in answer.text
    browser.save_screenshot(str(SCREENSHOTS / "faq-1-answered.png"))
    browser.find_element(By.ID, "helpful-yes").click()
    assert "Thank you" in wait_for(browser, "thanks").text

    ask(browser, live_server, "help", contact="ann@example.com")
    suggestions = wait_for(browser, "suggestions")
    assert 1 <= len(suggestions.find_elements(By.TAG_NAME, "li")) <= 3
    browser.save_screenshot(str(SCREENSHOTS / "faq-2-suggestions.png"))

    browser.find_element(By.ID, "escalate").click()
    escalated = wait_for(browser, "escalated")
    assert "sent to our staff" in escalated.text and "ann@example.com" in escalated.text
    browser.save_screenshot(str(SCREENSHOTS / "faq-3-escalated.png"))
