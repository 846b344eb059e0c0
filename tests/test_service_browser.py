"""The service's web page in headless Chromium (selenium, /usr/bin/chromium + chromedriver).

Clicks ``#generate`` and waits for the result ``<img>``s inside ``#results``; checks the live
preview, the PNG download links and that a server-side 4xx is shown on the page. A
screenshot goes to tests/artifacts/service_page.png (git-ignored). Skips only when
Chromium or its driver is not installed (CI installs them: .ci/run).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from diffusion_lab.service.launch import ServerProcess

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() or shutil.which("chromium"))
    or not (Path(CHROMEDRIVER).exists() or shutil.which("chromedriver")),
    reason="headless Chromium is not installed (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def server():
    with ServerProcess("--concurrency", "1", "--queue-size", "4") as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,760", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    driver_path = CHROMEDRIVER if Path(CHROMEDRIVER).exists() else shutil.which("chromedriver")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition, timeout=90):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def _set(driver, element_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(value)


def test_generate_shows_live_previews_then_downloadable_images(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server.url + "/")
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) >= 6)
    options = [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#model option")]
    assert "mnist_cond" in options and "toy_two_moons" in options
    assert browser.find_element(By.ID, "model").get_attribute("value") == "mnist_cond"
    methods = [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#method option")]
    assert "dpm_solver" in methods and "ancestral" in methods
    classes = [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#label option")]
    assert classes[1:] == [str(i) for i in range(10)]
    _set(browser, "steps", "8")
    _set(browser, "seed", "0")
    # record every preview the page draws, to prove denoising was shown live
    browser.execute_script("""
        window.previewFrames = 0;
        new MutationObserver(() => { window.previewFrames += 1; })
            .observe(document.getElementById('preview'), {childList: true});""")
    browser.find_element(By.ID, "generate").click()
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results img")) == 4)
    imgs = browser.find_elements(By.CSS_SELECTOR, "#results img")
    _wait(browser, lambda d: all(d.execute_script("return arguments[0].complete", i) for i in imgs))
    sizes = [browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]",
                                    img) for img in imgs]
    assert sizes == [[28, 28]] * 4
    assert browser.execute_script("return window.previewFrames") >= 8  # one per step, at least
    links = browser.find_elements(By.CSS_SELECTOR, "#results a[download]")
    assert len(links) == 4
    assert links[0].get_attribute("download").endswith(".png")
    assert links[0].get_attribute("href").startswith("data:image/png;base64,")
    summary = browser.find_element(By.ID, "summary").text
    assert "8 steps" in summary and "seed 0" in summary
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "service_page.png"))


def test_the_page_shows_a_client_error_naming_the_field(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server.url + "/")
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) >= 6)
    _set(browser, "steps", "999")
    browser.find_element(By.ID, "generate").click()
    _wait(browser, lambda d: "422" in d.find_element(By.ID, "status").text)
    status = browser.find_element(By.ID, "status").text
    assert "(steps)" in status and "200" in status  # the field and the limit
    assert browser.find_elements(By.CSS_SELECTOR, "#results img") == []
