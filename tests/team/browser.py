"""The Prefect and MLflow UIs of the team servers in a real browser (Debian's chromium, headless, driven by selenium
through /usr/bin/chromedriver: nothing is downloaded at test time), as a person opening them sees them.

Each page is loaded, waited for with a deadline until what it must show is there (the single-page apps fill
themselves in from their APIs after the load), and saved as a screenshot under tests/team/out/screenshots/
(git-ignored) whatever the outcome, so a failure can be looked at.

The servers ask for credentials (infra/team.py), read from the environment the tests run with (team.env's): the
Prefect UI is logged into through its login form, as a person does. MLflow's basic auth would ask a person in the
browser's own dialog, which headless chromium cannot show, and its UI refuses to fetch from a page whose URL carries
credentials: chromium is told to send the header that dialog would make it send (set_basic_auth).
"""
from __future__ import annotations

import base64
import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

SCREENSHOTS = Path(__file__).resolve().parent / "out" / "screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"   # infra/install-debian-deps.sh
PAGE_S = 60            # a page's content: a busy 2-core host, and a first visit compiles the app's scripts
# the Prefect UI's toast when the API it was told about (/ui-settings' api_url) does not answer
NO_API_BANNER = "Can't connect to Server API"


class Page:
    """One browser (a fresh profile: no remembered UI choices) for a test's pages."""

    def __init__(self, driver, prefix: str):
        self.driver, self.prefix = driver, prefix

    def open(self, url: str, name: str, ready, what: str) -> str:
        """Load `url`, wait until `ready(body text)` holds, screenshot it as `<prefix>-<name>.png`; the body text."""
        self.driver.get(url)
        try:
            self.wait(lambda: ready(self.text()), what)
            return self.text()
        finally:
            self.screenshot(name)

    def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(SCREENSHOTS / f"{self.prefix}-{name}.png"))

    def wait(self, ready, what: str):
        """What `ready()` returns once it is true, polled until PAGE_S have passed."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, PAGE_S, poll_frequency=0.25).until(lambda d: ready())
        except TimeoutException:
            raise AssertionError(f"{self.driver.current_url}: no {what} within {PAGE_S} s; the page shows:\n"
                                 f"{self.text()[:3000]}") from None

    def text(self) -> str:
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.common.by import By

        try:
            return self.driver.find_element(By.TAG_NAME, "body").text
        except WebDriverException:   # the app replaced the body while it was read: the next poll reads again
            return ""

    def show_link(self, text: str) -> str:
        """The text of the list row around the link that says `text` (its nearest ancestor that also says
        "Deployment"), scrolled into view for the screenshot; "" when the page has no such link."""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.common.by import By

        xpath = f"//a[normalize-space()='{text}']/ancestor::*[contains(., 'Deployment')][1]"
        try:
            rows = self.driver.find_elements(By.XPATH, xpath)
            if rows:
                self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", rows[0])
            return rows[0].text if rows else ""
        except WebDriverException:   # re-rendered while read: the next poll looks again
            return ""

    def cells_after_heading(self, heading: str) -> list[str]:
        """The cells of the first table after the heading that says `heading` (a rendered Markdown description)."""
        from selenium.webdriver.common.by import By

        xpath = (f"//*[self::h1 or self::h2 or self::h3][normalize-space()='{heading}']"
                 "/following::table[1]//td")
        return [cell.text.strip() for cell in self.driver.find_elements(By.XPATH, xpath)]


@contextlib.contextmanager
def browser(prefix: str) -> Iterator[Page]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox",   # we run as root: chromium's sandbox refuses root
                "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)   # a path: no selenium-manager
    try:
        yield Page(driver, prefix)
    finally:
        driver.quit()


def log_in_to_prefect(page: Page, prefect_url: str) -> None:
    """Prefect's login page takes the API auth string; the UI keeps it in the browser (localStorage) and goes on."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    page.driver.get(f"{prefect_url}/login")
    field = page.wait(lambda: page.driver.find_elements(By.CSS_SELECTOR, "input[type=password]"), "a login form")[0]
    page.screenshot("prefect-login")
    field.send_keys(os.environ["PREFECT_API_AUTH_STRING"], Keys.ENTER)
    page.wait(lambda: "/login" not in page.driver.current_url, "the UI past its login page")


def set_basic_auth(page: Page, username: str, password: str) -> None:
    """Every later request of this browser carries `Authorization: Basic ...` (to any server: call it before the
    pages that need it, after the others)."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    page.driver.execute_cdp_cmd("Network.enable", {})
    page.driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})


def check_prefect_ui(page: Page, prefect_url: str, flow_run: dict, deployment_name: str) -> None:
    """The runs list names the scheduled flow run; its page names its deployment and its final state; neither page
    says it cannot reach the server's API (the UI asks /ui-settings where it is: infra/team.py sets it)."""
    name = flow_run["name"]
    log_in_to_prefect(page, prefect_url)
    listed = page.open(f"{prefect_url}/runs", "prefect-runs", lambda t: (name in t and page.show_link(name))
                       or NO_API_BANNER in t, f"a link to flow run {name} in the runs list")
    assert NO_API_BANNER not in listed, listed[:2000]
    row = page.wait(lambda: page.show_link(name), f"the row of {name}")   # scrolled to it once the list settled
    assert re.search(rf"Deployment\s+{re.escape(deployment_name)}", row), row   # the run's row names its deployment
    page.screenshot("prefect-runs")
    shown = page.open(f"{prefect_url}/runs/flow-run/{flow_run['id']}", "prefect-flow-run",
                      lambda t: deployment_name in t or NO_API_BANNER in t, f"deployment {deployment_name}")
    assert NO_API_BANNER not in shown, shown[:2000]
    assert name in shown and re.search(rf"Deployment\s+{re.escape(deployment_name)}", shown), shown[:2000]
    assert flow_run["state"]["name"] in shown, shown[:2000]


def check_mlflow_ui(page: Page, mlflow_uri: str, experiment_id: str, run_name: str, model: str,
                    champion: str) -> None:
    """The experiment's model-training view lists the run under its name; the registered model's page shows the
    champion history with the champion's version.

    MLflow 3.17's UI picks the experiment view from its GenAI / Model training switch: the `workflowType` URL
    parameter, else the browser's last choice, else GenAI (the `mlflow.experimentKind` tag does not pick it in
    3.17.2, read in its bundle and seen here): links to the training view carry `workflowType=machine_learning`."""
    set_basic_auth(page, os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"])
    runs = page.open(f"{mlflow_uri}/#/experiments/{experiment_id}?workflowType=machine_learning", "mlflow-runs",
                     lambda t: run_name in t, f"run {run_name!r} in the experiment's runs")
    url = page.driver.current_url
    assert f"/experiments/{experiment_id}/runs" in url and "workflowType=machine_learning" in url, url
    assert "Token Usage" not in runs and "Observability" not in runs, runs[:2000]   # the GenAI layout's
    shown = page.open(f"{mlflow_uri}/#/models/{model}", "mlflow-model", lambda t: "Champion history" in t,
                      "'Champion history' in the model's description")
    cells = page.cells_after_heading("Champion history")
    assert champion in cells or f"v{champion}" in cells, (cells, shown[:2000])
