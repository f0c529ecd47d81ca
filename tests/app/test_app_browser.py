"""`dptune app` in a real browser: started as a user would (a subprocess on a loopback port), driven by Selenium in
headless Chromium -- type a prompt, press generate, see every chosen method's images; an empty prompt gets a
message on the page. Saves a screenshot (runs/test-artifacts/app.png, or $DPTUNE_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import REPO

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and DRIVER) and not os.environ.get("CI"):  # CI installs both (.ci/run): never skipped there
    pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)

METHODS = ["base", "dpt+sc", "dpt+gsc"]  # a random adapter stands in for trained DPT weights


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    cmd = [sys.executable, "-m", "dptune.cli.main", "app", "--port", str(port), "--adapter", "random",
           "--methods", ",".join(METHODS), "--images", "2", "--demo-dir", str(log.parent / "no-demo")]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}/"
        try:
            for _ in range(240):  # model loading and Gradio start-up: up to 2 minutes on a busy 2-core machine
                if proc.poll() is not None:
                    pytest.fail(f"dptune app exited with {proc.returncode}: {log.read_text()[-2000:]}")
                try:
                    urllib.request.urlopen(url, timeout=2)
                    break
                except OSError:
                    time.sleep(0.5)
            else:
                pytest.fail(f"dptune app did not answer at {url}: {log.read_text()[-2000:]}")
            assert f"dptune app: http://127.0.0.1:{port}" in log.read_text()  # the address is printed
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path_factory.mktemp('chrome')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def _generate(browser, prompt: str) -> None:
    from selenium.webdriver.common.by import By

    box = browser.find_element(By.CSS_SELECTOR, "#prompt textarea, #prompt input")
    box.clear()
    if prompt:
        box.send_keys(prompt)
    browser.find_element(By.CSS_SELECTOR, "#generate").click()


def test_images_of_each_chosen_method_appear(app_url, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(app_url)
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#prompt textarea, #prompt input"))
    boxes = {b.find_element(By.XPATH, "..").text.strip(): b
             for b in browser.find_elements(By.CSS_SELECTOR, "#methods input[type=checkbox]")}
    assert sorted(boxes) == sorted(METHODS)
    assert [n for n in METHODS if boxes[n].is_selected()] == ["base", "dpt+gsc"]  # the defaults
    boxes["dpt+sc"].click()  # and the paper's self-correction too
    _generate(browser, "a red circle to the left of a blue square")
    WebDriverWait(browser, 300).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .dptune-method")) == len(METHODS))
    columns = browser.find_elements(By.CSS_SELECTOR, "#results .dptune-method")
    assert [c.get_attribute("data-method") for c in columns] == METHODS
    for column in columns:
        images = column.find_elements(By.TAG_NAME, "img")
        assert len(images) == 2  # --images 2: seeds 0 and 1
        assert all(int(img.get_attribute("naturalWidth")) >= 128 for img in images)  # enlarged, not postage stamps
        assert "correct" in column.text or "wrong" in column.text  # the ShapesWorld judge's verdicts
    folder = Path(os.environ.get("DPTUNE_TEST_ARTIFACTS", REPO / "runs" / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(folder / "app.png"))


def test_an_empty_prompt_gets_a_message_not_a_traceback(app_url, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(app_url)
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#prompt textarea, #prompt input"))
    _generate(browser, "")
    error = WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .dptune-error"))
    assert "type a prompt first" in error[0].text
    assert "Traceback" not in browser.page_source
