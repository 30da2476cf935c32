"""What the served page does with an answer, in headless Chromium (was: greps of app.js / map.js source text): a
neighbour's score says what it is, a photo whose own GPS lies far away gets the note and an arrow "off this map"
while the map stays on the gallery. One server (knn on a synthetic 4-place gallery) and one browser per module."""
from __future__ import annotations

import json

import pytest

from _browser import ServerThread, chromium, inside, rect, rects, wait_settled
from _use_helpers import jpeg_bytes, model_env, place_image, place_latlon
from img2gps.types import Neighbour, Prediction, prediction_dict

pytestmark = pytest.mark.slow  # a browser and a server start per module (a few seconds)

IRVINE = (33.6405, -117.8443)  # a photo from elsewhere for this Philadelphia-like gallery


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """(driver at the served page, folder for uploads), the page ready (model and gallery drawn)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from img2gps.server import create_app

    gen = model_env(tmp_path_factory)
    model_dir = next(gen)
    tmp = tmp_path_factory.mktemp("page")
    with ServerThread(create_app(model_dir)) as url, chromium(tmp / "profile") as driver:
        driver.get(url)
        body = driver.find_element(By.TAG_NAME, "body")
        WebDriverWait(driver, 60).until(lambda d: body.get_attribute("data-ready") == "1")
        yield driver, tmp
    gen.close()


def upload(driver, path, answer: dict | None = None) -> None:
    """Upload `path` through the page's file input and wait for its answer; with `answer`, the page's request
    gets that HTTP answer instead of the server's (a kind of answer this model cannot give)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("""
        window.__answer = arguments[0];
        if (!window.__fetch) window.__fetch = window.fetch;
        window.fetch = function (url, opts) {
          if (window.__answer && String(url).indexOf("predict") === 0)
            return Promise.resolve(new Response(JSON.stringify(window.__answer),
                                                {status: 200, headers: {"Content-Type": "application/json"}}));
          return window.__fetch(url, opts);
        };
        document.body.setAttribute("data-state", "");""", answer)
    driver.find_element(By.ID, "file").send_keys(str(path))
    body = driver.find_element(By.TAG_NAME, "body")
    WebDriverWait(driver, 60).until(lambda d: body.get_attribute("data-state") in ("done", "error"))
    assert body.get_attribute("data-state") == "done", driver.find_element(By.ID, "status").text
    wait_settled(driver)


def photo(folder, name, gps=None, place=2):
    path = folder / name
    path.write_bytes(jpeg_bytes(place_image(place, seed=77), gps=gps))
    return path


def test_neighbour_scores_say_what_they_are(page):
    """A verified answer's score is an inlier count (it read 'score 65.000'), a fallback's a cosine similarity."""
    from selenium.webdriver.common.by import By

    driver, tmp = page
    lat, lon = place_latlon(1)
    for source, score, shown in (("scene", 65.0, "inliers 65"), ("fallback", 0.4271, "cosine similarity 0.427")):
        p = Prediction(lat, lon, 30.0, 0.5, False, "rerank", [Neighbour("g.jpg", lat, lon, score)], source=source)
        upload(driver, photo(tmp, f"{source}.jpg"), json.loads(json.dumps(prediction_dict(p))))
        items = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#neighbours li")]
        assert len(items) == 1 and shown in items[0] and "score" not in items[0], items


def test_a_photo_from_elsewhere_is_noted_and_the_map_stays_on_the_gallery(page):
    """A photo whose own GPS is 3,800 km away (the server's real answer): the page says so, draws an arrow with the
    label "off this map" inside the map, and keeps the gallery in view instead of zooming out to a continent; a
    photo taken in the area gets no note."""
    from selenium.webdriver.common.by import By

    driver, tmp = page
    upload(driver, photo(tmp, "away.jpg", gps=IRVINE))
    note = driver.find_element(By.ID, "r-elsewhere")
    assert note.is_displayed() and note.text.startswith("Photo from elsewhere: its own GPS places it 3,"), note.text
    m = rect(driver, "#map")
    label = rect(driver, ".img2gps-exif-far-label")
    assert "off this map" in driver.find_element(By.CSS_SELECTOR, ".img2gps-exif-far-label").text
    assert inside(label, m) and inside(rect(driver, ".img2gps-exif-far"), m), (label, m)
    gallery = rects(driver, "path.img2gps-gallery")
    assert gallery and all(inside(r, m) for r in gallery)
    # 4 places ~150 m apart: at campus zoom they lie tens of pixels apart, at continent zoom on one pixel
    xs = [(r["left"] + r["right"]) / 2 for r in gallery]
    assert max(xs) - min(xs) > 40, xs
    assert not driver.find_elements(By.CSS_SELECTOR, "path.img2gps-exif")  # no marker drawn at the far point

    upload(driver, photo(tmp, "home.jpg", gps=place_latlon(2)))
    assert not driver.find_element(By.ID, "r-elsewhere").is_displayed()
    assert not driver.find_elements(By.CSS_SELECTOR, ".img2gps-exif-far-label")
