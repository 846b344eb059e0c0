"""Lesson 10's app served by Voilà, driven in headless Chromium (selenium).

One Voilà server on a free port and one page for the module (started once, stopped by PID).
Each task: pick model and task, few steps, click ``.dl-generate`` and wait — at most
``CLICK_TIMEOUT_S`` — until ``img.dl-output`` shows a new image and the status says done.
Chromium resolves no host but 127.0.0.1, so the page works without any CDN. A screenshot
of every task goes to tests/artifacts/dashboard_<task>.png and of the app alone to
dashboard_<task>_app.png (git-ignored; notebooks/figures/10_dashboard.png is one),
also on failure;
the click-to-image times are printed (``-s``) and written to tests/artifacts/dashboard_times.csv.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from diffusion_lab.dashboard.launch import VoilaProcess

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PAGE_TIMEOUT_S = 150  # kernel start + imports + the notebook's cells, on a busy 2-core CPU
CLICK_TIMEOUT_S = 60  # click → new output image, a few sampler steps on the CPU

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (Path(CHROMIUM).exists() or shutil.which("chromium"))
    or not (Path(CHROMEDRIVER).exists() or shutil.which("chromedriver")),
    reason="headless Chromium is not installed (apt-get install chromium chromium-driver)")]

TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def page():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1100", "--no-first-run", "--disable-extensions",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):  # offline
        options.add_argument(arg)
    driver_path = CHROMEDRIVER if Path(CHROMEDRIVER).exists() else shutil.which("chromedriver")
    with VoilaProcess() as voila:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            driver.set_page_load_timeout(PAGE_TIMEOUT_S)
            start = time.perf_counter()
            driver.get(voila.url + "/")
            try:
                _wait(driver, lambda d: _find(d, ".dl-generate") and _src(d), PAGE_TIMEOUT_S)
                TIMES["page_load"] = time.perf_counter() - start
            except Exception as exc:
                _shot(driver, "page_load")
                raise RuntimeError(f"the app did not appear:\n{voila.log_text()[-3000:]}") \
                    from exc
            yield driver
        finally:
            driver.quit()
    ARTIFACTS.mkdir(exist_ok=True)
    rows = "".join(f"{task},{s:.2f}\n" for task, s in TIMES.items())
    (ARTIFACTS / "dashboard_times.csv").write_text("task,click_to_image_s\n" + rows)


def _wait(driver, condition, timeout):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def _find(driver, css):
    return driver.find_elements("css selector", css)


def _src(driver) -> str:
    found = _find(driver, "img.dl-output")
    return (found[0].get_attribute("src") or "") if found else ""


def _shot(driver, name: str) -> None:
    """The window, and the app alone (``dashboard_<name>_app.png``) when it is on the page."""
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"dashboard_{name}.png"))
    app = _find(driver, ".dl-dashboard")
    if app:
        driver.execute_script("arguments[0].scrollIntoView()", app[0])
        app[0].screenshot(str(ARTIFACTS / f"dashboard_{name}_app.png"))


def _choose(driver, control: str, *texts: str) -> None:
    from selenium.webdriver.support.ui import Select

    select = Select(_find(driver, f".dl-{control} select")[0])
    if select.is_multiple:
        select.deselect_all()
    for text in texts:
        select.select_by_visible_text(text)


def _type(driver, control: str, value) -> None:
    from selenium.webdriver.common.keys import Keys

    field = _find(driver, f".dl-{control} input")[0]
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(str(value), Keys.TAB)
    _wait(driver, lambda d: field.get_attribute("value") == str(value), 10)


def _click_and_wait(driver, name: str) -> float:
    """Click generate; seconds until the output image is new and the status says done."""
    before = _src(driver)
    start = time.perf_counter()
    _find(driver, ".dl-generate")[0].click()
    try:
        _wait(driver, lambda d: _src(d) not in ("", before)
              and "done" in _find(d, ".dl-status")[0].text, CLICK_TIMEOUT_S)
    except Exception:
        _shot(driver, f"{name}_failed")
        raise
    seconds = time.perf_counter() - start
    assert _find(driver, ".dl-error")[0].text == ""
    width = driver.execute_script("return arguments[0].naturalWidth",
                                  _find(driver, "img.dl-output")[0])
    assert width > 0  # a decodable picture, not a broken image
    _shot(driver, name)
    return seconds


TASKS = [  # (name, model, task, extra settings)
    ("generate", "mnist_cond", "generate", {"label": "7", "guidance": 2}),
    ("inpaint", "mnist_cond", "inpaint", {"mask": "random pixels"}),
    ("colorize", "colour_mnist", "colorize", {}),
    ("super_resolve", "mnist_cond", "super_resolve", {"factor": "4"}),
    ("interpolate", "mnist_cond", "interpolate", {"seed-b": 5}),
    ("compare", "mnist_cond", "compare", {"methods": ("ddim", "dpm_solver", "edm")}),
    ("toy_generate", "toy_two_moons", "generate", {}),
]


@pytest.mark.parametrize("name, model, task, extra", TASKS, ids=[t[0] for t in TASKS])
def test_each_task_makes_a_new_output_image(page, name, model, task, extra):
    _choose(page, "model", model)
    _choose(page, "task", task)
    _type(page, "steps", 4)
    if model == "mnist_cond":  # class and w stay as set on the same model: reset them
        _choose(page, "label", "none")
        _type(page, "guidance", 1)
    for control, value in extra.items():
        if control in ("guidance", "seed-b"):
            _type(page, control, value)
        else:
            _choose(page, control, *(value if isinstance(value, tuple) else (value,)))
    TIMES[name] = _click_and_wait(page, name)
    print(f"\n{name} on {model}: click to image {TIMES[name]:.2f} s")
    stats = _find(page, ".dl-stats")[0].text
    assert "4 steps" in stats and "NFE" in stats
    if task == "compare":
        assert all(m in stats for m in ("ddim", "dpm_solver", "edm"))
    if task == "generate" and model == "mnist_cond":
        assert "NFE 4" in stats  # guidance batches both passes: still one NFE per step


def test_a_bad_combination_is_explained_and_the_app_recovers(page):
    _choose(page, "model", "mnist_cond")
    _choose(page, "task", "colorize")
    before = _src(page)
    _find(page, ".dl-generate")[0].click()
    try:
        _wait(page, lambda d: "colour (RGB)" in _find(d, ".dl-error")[0].text, CLICK_TIMEOUT_S)
    except Exception:
        _shot(page, "bad_request_failed")
        raise
    _shot(page, "bad_request")
    assert "grey-scale" in _find(page, ".dl-error")[0].text
    assert _src(page) == before  # the last good result stays
    _choose(page, "task", "generate")
    _type(page, "steps", 3)
    TIMES["after_error"] = _click_and_wait(page, "after_error")
    assert _find(page, ".dl-error")[0].text == ""
