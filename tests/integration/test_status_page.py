"""The status page in a real browser: Debian's chromium and chromium-driver, headless,
driven by Selenium with the driver given explicitly (nothing is downloaded).

A job made through the API shows on the page and reaches 100 %; a second,
hung one is cancelled from the page; with a token, the page asks for it; a
1 000-image job is drawn from its event stream, fetched whole only at its
start and its end (requests counted in the server's access log).
Screenshots are kept as test artifacts in the test ground's directory.
"""

import re
import shutil
import time
from collections import Counter
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


ACCESS = re.compile(r'"(GET|POST|DELETE) (\S+) HTTP/1\.1" (\d+) (\d+|-)')


def _page_requests(server, job_id):
    """The page's requests in the server's access log: ``(kind counts, bytes by kind)``."""
    kinds, sizes = Counter(), Counter()
    for method, path, _status, size in ACCESS.findall(server.log()):
        if method != "GET" or not path.startswith("/jobs"):
            continue
        kind = ("events" if path == "/jobs/%s/events" % job_id else "job" if path == "/jobs/" + job_id else
                "list" if path.startswith("/jobs?") else "other")
        kinds[kind] += 1
        sizes[kind] += int(size) if size != "-" else 0
    return kinds, sizes


MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def _tags(ground, count):
    """``count`` references: the fixtures' manifests put again under new tags (no layers move)."""
    refs = []
    for n in range(count):
        repo, tag = "fixture/img-%02d" % (n % ground.fixture_count + 1), "page%04d" % n
        base = "http://%s/v2/%s/manifests/" % (ground.registry, repo)
        if requests.head(base + tag, headers={"Accept": MANIFEST}, timeout=10).status_code != 200:
            manifest = requests.get(base + "latest", headers={"Accept": MANIFEST}, timeout=10)
            put = requests.put(base + tag, data=manifest.content, headers={"Content-Type": MANIFEST}, timeout=10)
            assert put.status_code == 201, put.text
        refs.append("%s/%s:%s" % (ground.registry, repo, tag))
    return refs


def test_a_1000_image_job_is_drawn_from_its_events_and_fetched_whole_twice_at_most(clean, server, browser):
    count = 1000
    body = {"concurrency": 20, "images": _tags(clean, count)}
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 600, poll_frequency=0.2)
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#jobs p, #jobs .job")))
    t0 = time.monotonic()
    job_id = requests.post(server.url + "/jobs", json=body, timeout=30).json()["id"]
    done = wait.until(EC.presence_of_element_located(
        (By.CSS_SELECTOR, '.job[data-id="%s"][data-status="succeeded"]' % job_id)))
    took = time.monotonic() - t0
    assert done.find_element(By.CSS_SELECTOR, ".pct").text == "100 %"
    assert "%d/%d ok" % (count, count) in done.find_element(By.CSS_SELECTOR, ".counts").text
    # Its stream ended with the report: the page asks for the final rows once; then only the list.
    wait.until(lambda d: _page_requests(server, job_id)[0]["job"] >= 1)
    time.sleep(5)  # two more rounds of the list: nothing more about this job
    kinds, sizes = _page_requests(server, job_id)
    elapsed = time.monotonic() - t0
    assert kinds["job"] + kinds["events"] <= 2, kinds  # the stream's state, and the end
    assert kinds["list"] <= elapsed / 2 + 3, kinds  # every 2 s, whatever the events
    assert kinds["other"] == 0, kinds
    done = browser.find_element(By.CSS_SELECTOR, '.job[data-id="%s"]' % job_id)
    done.find_element(By.CSS_SELECTOR, ".id").click()
    rows = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '.job[data-id="%s"] tr.image' % job_id)
                      if len(d.find_elements(By.CSS_SELECTOR, '.job[data-id="%s"] tr.image' % job_id)) == count
                      else False)
    cells = browser.execute_script(
        "return [...document.querySelectorAll('.job[data-id=\"' + arguments[0] + '\"] tr.image')]"
        ".map((tr) => [tr.querySelector('.phase').textContent, tr.querySelector('.progress').textContent])",
        job_id)
    assert len(rows) == count and cells == [["succeeded", "100 %"]] * count
    statuses = browser.execute_script("return jobs.get(arguments[0]).images.map((img) => img.row.status)", job_id)
    assert set(statuses) == {"pulled"}, Counter(statuses)
    assert _page_requests(server, job_id)[0]["job"] == kinds["job"], "opening the table fetched the job again"
    shot = _artifact(clean, browser, "status-page-1000.png")
    report(clean, "status page, %d-image job (%.1fs): %d event stream, %d full-job GET, %d list GETs; "
           "%.0f KB in all (stream %.0f KB, job %.0f KB, lists %.0f KB); screenshot %s" % (
               count, took, kinds["events"], kinds["job"], kinds["list"], sum(sizes.values()) / 1e3,
               sizes["events"] / 1e3, sizes["job"] / 1e3, sizes["list"] / 1e3, shot))
