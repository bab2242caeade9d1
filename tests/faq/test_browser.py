"""The public form in a real browser: Debian's headless Chromium driven through chromedriver (selenium).

Needs `apt-get install -y chromium chromium-driver fonts-noto-cjk` (the browser is never downloaded by the
test; the fonts only make the Chinese text legible in the screenshots).
Screenshots of each state are written to var/screenshots/.
"""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.browser import SCREENSHOTS, headless_chromium

from .conftest import SAMPLE_THRESHOLD, calibrate


@pytest.fixture
def browser():
    with headless_chromium(window_size="1000,800") as driver:
        yield driver


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


@pytest.mark.django_db(transaction=True)
def test_one_library_answers_english_in_english_and_chinese_in_chinese_on_the_chinese_page(
        browser, live_server, sample_library, settings):
    # The browser posts from 127.0.0.1, as other tests of the run do: the form's per-client limit is not the point.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "inquiry_form": "1000/minute"}}
    calibrate(SAMPLE_THRESHOLD)
    browser.get(f"{live_server.url}/ask/")
    browser.find_element(By.ID, "language-zh-hans").click()  # the visible switch
    assert wait_for(browser, "ask-form")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-hans"
    assert "您的问题" in browser.page_source and browser.find_element(By.ID, "language-en").text == "English"

    ask(browser, live_server, "How long does it take to get my refund back?")
    answer = wait_for(browser, "answer")
    assert "Once approved, refunds go back to the original payment method" in answer.text
    assert "How long does a refund take?" in answer.text  # the question in the answer's language too
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-hans"
    assert "这个回答有帮助吗" in browser.page_source
    browser.save_screenshot(str(SCREENSHOTS / "faq-4-english-answer-chinese-page.png"))

    ask(browser, live_server, "退款要多久才能到账？")
    answer = wait_for(browser, "answer")
    assert "退款审核通过后，原路退回" in answer.text
    browser.save_screenshot(str(SCREENSHOTS / "faq-5-chinese-answer-chinese-page.png"))
