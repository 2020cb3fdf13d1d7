"""The status page in a real browser: Debian's chromium and chromium-driver, headless,
driven by Selenium with the driver given explicitly (nothing is downloaded).

A job made through the API shows on the page and reaches 100 %; a second,
hung one is cancelled from the page; with a token, the page asks for it.
Screenshots are kept as test artifacts in the test ground's directory.
"""

import shutil
import time
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from conftest import LEAKS, report
from faultproxy import Rules

CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    assert shutil.which("chromium") and Path(CHROMEDRIVER).exists(), \
        "chromium and chromium-driver are installed by scripts/bootstrap.sh"
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1200,900", "--user-data-dir=%s" % tmp_path_factory.mktemp("chromium")):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _artifact(ground, driver, name):
    path = Path(ground.dir, "artifacts")
    path.mkdir(exist_ok=True)
    driver.save_screenshot(str(path / name))
    return path / name


def test_the_page_shows_a_job_reach_100_and_cancels_another(clean, server, proxy, browser):
    proxy.reset_stats(Rules(delay=30))
    images = [clean.image(n) for n in range(1, 13)]
    browser.get(server.url + "/")
    job_id = requests.post(server.url + "/jobs", json={"images": images, "concurrency": 4}).json()["id"]
    wait = WebDriverWait(browser, 60, poll_frequency=0.2)
    done = wait.until(EC.presence_of_element_located(
        (By.CSS_SELECTOR, '.job[data-id="%s"][data-status="succeeded"]' % job_id)))
    assert done.find_element(By.CSS_SELECTOR, ".pct").text == "100 %"
    assert "12/12 ok" in done.find_element(By.CSS_SELECTOR, ".counts").text
    done.find_element(By.CSS_SELECTOR, ".id").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '.job[data-id="%s"] tr.image' % job_id)) == 12)
    shot = _artifact(clean, browser, "status-page.png")

    hung = requests.post(server.url + "/jobs", json={"images": [clean.image(14, registry=proxy.address)]}).json()["id"]
    button = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, '.job[data-id="%s"] button.cancel' % hung)))
    t0 = time.monotonic()
    button.click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '.job[data-id="%s"][data-status="cancelled"]' % hung)))
    took = time.monotonic() - t0
    assert requests.get(server.url + "/jobs/" + hung).json()["status"] == "cancelled"
    _artifact(clean, browser, "status-page-cancelled.png")
    report(clean, "status page (headless chromium): job of 12 shown at 100 %%, hung job cancelled from the page "
           "in %.1fs; screenshot %s" % (took, shot))


def test_with_a_token_the_page_asks_for_it_and_keeps_it_in_session_storage(clean, start_server, browser):
    token = "Page-Token-4711"
    LEAKS.secrets.add(token)
    server = start_server(env={"PULLER_TOKEN": token})
    page = requests.get(server.url + "/")
    assert page.status_code == 200 and token not in page.text  # the page carries no data
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 20, poll_frequency=0.2)
    field = wait.until(EC.visibility_of_element_located((By.ID, "token")))
    field.send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    job_id = requests.post(server.url + "/jobs", json={"images": [clean.image(1)]},
                           headers={"Authorization": "Bearer " + token}).json()["id"]
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '.job[data-id="%s"][data-status="succeeded"]' % job_id)))
    assert browser.execute_script("return sessionStorage.getItem('puller-token')") == token
    assert browser.execute_script("return localStorage.length") == 0
