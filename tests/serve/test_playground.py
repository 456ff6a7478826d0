"""The playground page at / in a real headless Chromium (selenium): type a prompt, attach an image,
watch the streamed answer, classify a text. Writes a screenshot to outputs/tests/playground.png."""

from __future__ import annotations

from pathlib import Path

from serve_helpers import browser_or_skip, png_data_url

SCREENSHOT = Path(__file__).resolve().parents[2] / "outputs" / "tests" / "playground.png"


def test_playground_streams_an_answer_with_an_image_and_classifies(server, tmp_path):
    import base64

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    image = tmp_path / "red.png"
    image.write_bytes(base64.b64decode(png_data_url(48, 32).split(",", 1)[1]))
    browser = browser_or_skip()
    try:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: "serving:" in b.find_element(By.ID, "models-line").text)
        assert Select(browser.find_element(By.ID, "chat-model")).first_selected_option.text == "tiny"

        browser.find_element(By.ID, "prompt").send_keys("What is in this picture?")
        browser.find_element(By.ID, "image").send_keys(str(image))
        wait.until(lambda b: b.find_element(By.ID, "preview").is_displayed())
        browser.find_element(By.ID, "send").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "chat-status"), "done"))
        status = browser.find_element(By.ID, "chat-status").text
        answer = browser.find_element(By.ID, "answer").text
        assert answer.strip(), status
        chunks = int(status.split(":")[1].split("chunks")[0])
        assert chunks > 1, f"the answer did not arrive in pieces: {status}"

        browser.find_element(By.ID, "clf-text").send_keys("a wonderful, moving film")
        browser.find_element(By.ID, "classify").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "clf-status"), "label:"))
        bars = browser.find_elements(By.CSS_SELECTOR, "#classes .bar")
        assert {b.find_element(By.CLASS_NAME, "name").text for b in bars} == {"negative", "neutral", "positive"}
        assert "error" not in browser.find_element(By.ID, "clf-status").get_attribute("class")

        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(SCREENSHOT))
    finally:
        browser.quit()
