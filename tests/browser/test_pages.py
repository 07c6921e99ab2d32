"""The classify page and the API docs, used in a real browser as a person would use them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from http import HTTPStatus
from pathlib import Path

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.conftest import MODEL_NAME

WAIT_S = 30  # the first request of a session warms the model up on a busy 2-core machine

# Hands a file to the page the way a drop or a paste does: as a DataTransfer in the event.
_DISPATCH_FILE = """
const [input, target, kind] = arguments;
const data = new DataTransfer();
data.items.add(input.files[0]);
input.remove();
if (kind === "drop") {
  for (const type of ["dragenter", "dragover", "drop"]) {
    target.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: data}));
  }
} else {
  target.dispatchEvent(new ClipboardEvent("paste", {bubbles: true, cancelable: true, clipboardData: data}));
}
"""


def open_page(browser: WebDriver, url: str) -> None:
    browser.get(url)
    WebDriverWait(browser, WAIT_S).until(lambda _: "version" in model_line(browser).text)


def model_line(browser: WebDriver) -> WebElement:
    return browser.find_element(By.ID, "model")


def give_file(browser: WebDriver, path: Path, how: str) -> None:
    """Hand `path` to the page: with its file picker, or dropped or pasted onto it."""
    if how == "pick":
        browser.find_element(By.ID, "file").send_keys(str(path))
        return
    # A file can reach a page's script only through a file input: use a throwaway one.
    helper = browser.execute_script(
        "const input = document.createElement('input'); input.type = 'file'; "
        "document.body.append(input); return input;"
    )
    helper.send_keys(str(path))
    target = browser.find_element(By.ID, "drop-zone")
    browser.execute_script(_DISPATCH_FILE, helper, target, how)


def shown_predictions(browser: WebDriver) -> list[tuple[str, float]]:
    """(label, score) of each row the page shows, waiting until there are some."""
    rows = WebDriverWait(browser, WAIT_S).until(
        lambda _: browser.find_elements(By.CSS_SELECTOR, "#predictions li")
    )
    return [
        (
            row.find_element(By.CLASS_NAME, "label").text,
            float(row.find_element(By.CLASS_NAME, "score").text.rstrip("%")) / 100,
        )
        for row in rows
    ]


def console_errors(browser: WebDriver) -> list[str]:
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def loaded_urls(browser: WebDriver) -> list[str]:
    """Every resource the page loaded (scripts, styles, images, fetches)."""
    urls: list[str] = browser.execute_script(
        "return [location.href, ...performance.getEntriesByType('resource').map(entry => entry.name)];"
    )
    return urls


@pytest.mark.slow
@pytest.mark.parametrize(("how", "image_format"), [("pick", "jpeg"), ("drop", "png"), ("paste", "webp")])
def test_an_image_given_to_the_page_gets_its_labels_shown(
    browser, server, examples, expected, published_version, how, image_format
):
    image = examples[image_format][0]
    open_page(browser, server.url + "/")
    assert f"{MODEL_NAME} version {published_version}" in model_line(browser).text

    give_file(browser, image, how)

    shown = shown_predictions(browser)
    model_says = expected(image)
    assert [label for label, _ in shown] == [label for label, _ in model_says]
    for (_, shown_score), (_, score) in zip(shown, model_says, strict=True):
        assert shown_score == pytest.approx(score, abs=0.0006)  # the page rounds to 0.1 %
    status = browser.find_element(By.ID, "status").text
    assert f"classified by {MODEL_NAME} version {published_version} in " in status
    assert status.endswith(" ms.")
    preview = browser.find_element(By.ID, "preview")
    assert preview.is_displayed()
    assert browser.execute_script("return arguments[0].naturalWidth", preview) > 0
    assert not browser.find_element(By.ID, "error").is_displayed()
    assert all(url.startswith(server.url + "/") for url in loaded_urls(browser)), "works offline"
    assert console_errors(browser) == []


def api_error_message(url: str, body: bytes, content_type: str) -> tuple[int, str]:
    """What the API itself answers to `body` (status, error message)."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    return refused.value.code, json.loads(refused.value.read())["error"]["message"]


@pytest.mark.slow
def test_a_text_file_gets_the_apis_415_message_in_words(browser, server, tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image\n")
    status, message = api_error_message(server.url + "/predict?top_k=5", text_file.read_bytes(), "text/plain")
    assert status == 415
    open_page(browser, server.url + "/")

    give_file(browser, text_file, "pick")

    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, WAIT_S).until(lambda _: error.is_displayed())
    assert error.text == f"415 {HTTPStatus(415).phrase}: {message}"
    assert error.get_attribute("role") == "alert"  # read out by screen readers as it appears
    assert browser.find_elements(By.CSS_SELECTOR, "#predictions li") == []
    assert not browser.find_element(By.ID, "preview").is_displayed()
    # The only console error is Chromium's note of the refused request.
    assert [m for m in console_errors(browser) if "status of 415" not in m] == []


@pytest.mark.slow
def test_the_page_fits_a_phone_screen(browser, server, examples):
    browser.set_window_size(390, 844)
    open_page(browser, server.url + "/")
    give_file(browser, examples["jpeg"][1], "pick")
    shown_predictions(browser)

    width, scroll_width = browser.execute_script(
        "return [document.documentElement.clientWidth, document.documentElement.scrollWidth];"
    )
    assert scroll_width <= width, "nothing sticks out sideways"
    assert browser.find_element(By.ID, "preview").size["width"] <= width


@pytest.mark.slow
def test_the_controls_are_reached_with_the_tab_key_and_have_labels(browser, server):
    open_page(browser, server.url + "/")

    def tab_to_next() -> tuple[str | None, str]:
        ActionChains(browser).send_keys(Keys.TAB).perform()
        control = browser.switch_to.active_element
        label = browser.execute_script("return arguments[0].labels[0].textContent.trim()", control)
        return control.get_attribute("id"), label

    assert tab_to_next() == ("file", "Choose an image")
    # The file input is visually hidden: its label shows the keyboard focus instead.
    chooser = browser.find_element(By.CSS_SELECTOR, "label[for=file]")
    assert chooser.value_of_css_property("outline-style") == "solid"
    assert tab_to_next() == ("top-k", "Labels to show")


@pytest.mark.slow
def test_the_docs_show_both_routes_and_try_it_out_calls_this_endpoint(browser, server, published_version):
    browser.get(server.url + "/docs")
    paths = WebDriverWait(browser, WAIT_S).until(
        lambda _: browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    )
    assert sorted(path.get_attribute("data-path") for path in paths) == ["/health", "/predict"]

    predict = browser.find_element(By.ID, "operations-default-predict")
    predict.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    WebDriverWait(browser, WAIT_S).until(lambda _: predict.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
    predict.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    predict.find_element(By.CSS_SELECTOR, ".execute").click()  # the request body's first example

    status = WebDriverWait(browser, WAIT_S).until(
        lambda _: predict.find_elements(By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status")
    )
    browser.execute_script("arguments[0].scrollIntoView()", status[0])  # for the screenshot
    assert status[0].text == "200"
    body = json.loads(predict.find_element(By.CSS_SELECTOR, ".live-responses-table .microlight").text)
    assert body["model"] == {"name": MODEL_NAME, "version": published_version}
    request_url = predict.find_element(By.CSS_SELECTOR, ".request-url pre").text
    assert request_url == f"{server.url}/predict?top_k=5"
    assert all(url.startswith(server.url + "/") for url in loaded_urls(browser)), "works offline"
    assert console_errors(browser) == []
