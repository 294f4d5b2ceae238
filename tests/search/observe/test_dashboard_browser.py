"""optuna-dashboard in a real browser (headless Chromium, driven by Selenium): the study page names the objective
`macro_f1`, and the best trial's page shows its confusion-matrix artifact as an image that loaded (naturalWidth
> 0, not just an <img> tag). Chromium comes from Debian (`chromium`, `chromium-driver`), installed here when
missing; where it cannot be, the test is skipped with the reason, except under CI=true, where it must run."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from clitools import search_bg
from studygen import write_study

pytestmark = pytest.mark.slow
SCREENSHOT = os.environ.get("SEARCH_SCREENSHOT")  # where to keep the trial page's screenshot (the README's)


def _chromium() -> tuple[str, str]:
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if all(found):
        return found
    why = "Debian's chromium and chromium-driver are not installed"
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
            r = subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], env=env,
                               capture_output=True, text=True, timeout=900)
            why = f"apt-get install chromium chromium-driver failed: {(r.stderr or r.stdout).strip()[-300:]}"
        except subprocess.TimeoutExpired:
            why = "apt-get install chromium chromium-driver timed out"
        found = shutil.which("chromium"), shutil.which("chromedriver")
        if all(found):
            return found
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but no headless Chromium: {why}")
    pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _browser(chromium: str, driver: str, profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    # the closed network refuses Chromium's own background connections: keep them off
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--window-size=1400,1100"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def _wait(what, check, seconds: float = 90):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_dashboard_names_the_metric_and_shows_the_confusion_matrix_artifact(tmp_path):
    pytest.importorskip("selenium", reason="selenium is in the dev extra")
    chromium, driver = _chromium()
    import optuna

    from search import load_study
    from search.store import open_storage
    from search.workers import work

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    runs = tmp_path / "runs"
    sc = load_study(str(write_study(tmp_path, "browse", n_trials=2, epochs=1)))
    work(sc, url, n_trials=2, output_root=runs, use_wandb=False, worker_index=0)
    study = optuna.load_study(study_name="browse", storage=open_storage(url))
    best = study.best_trial.number
    port = _free_port()
    dash = search_bg("dashboard", "--storage", url, "--artifacts", str(runs / "artifacts"), "--port", str(port),
                     cwd=tmp_path, log=tmp_path / "dashboard.log")
    browser = None
    try:
        def up() -> bool:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2).status == 200
            except OSError:
                return False

        _wait("the dashboard to answer", up, 120)
        browser = _browser(chromium, driver, tmp_path / "profile")
        browser.get(f"http://127.0.0.1:{port}/dashboard/studies/1")
        _wait("the study page to name macro_f1", lambda: "macro_f1" in browser.page_source)
        browser.get(f"http://127.0.0.1:{port}/dashboard/studies/1/trials?numbers={best}")
        loaded = ("return [...document.images].filter(i => i.src.includes('/artifacts/') && i.complete "
                  "&& i.naturalWidth > 0).map(i => i.src)")
        _wait("the trial page's artifact images to load", lambda: len(browser.execute_script(loaded)) >= 1)
        assert "confusion_matrix.png" in browser.page_source  # the artifact is named, and its image loaded
        if SCREENSHOT:
            browser.save_screenshot(SCREENSHOT)
    finally:
        if browser is not None:
            browser.quit()
        dash.terminate()
        dash.wait(30)
