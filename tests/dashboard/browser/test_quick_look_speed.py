"""End to end: `streamlit run` on 127.0.0.1 driven by headless Chromium through Playwright, timed and weighed."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.dashboard.support import dashboard_server
from tests.support import CSDI, ROOT, seeded_model

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "tests" / "artifacts"
VIEWPORT = {"width": 1440, "height": 2000}
PANELS = '[data-testid="stImage"] img'
MEMORY_LIMIT_MB = 1536  # the bound: 1.5 GB resident after reviewing 10 images
# Ten different photographs: the warm-up, the measured one and eight more.
WARM_UP = "LZ-OS.jpg"
MEASURED = "DLY-OD.jpg"  # 2734 x 1822 JPEG
# Eight more: the other photographs in tests/data/csdi, and mirror images of the two full-size ones
# (different pixels, so different maps), made at test time.
MORE = ["LZ-OD.jpg", "HAY1.jpg", "HAY2.jpg", "CGR1.jpg", "NL_022.png", "HJX1.jpg", "mirror:DLY-OD.jpg",
        "mirror:HJX1.jpg"]


def _rss_mb(pid: int) -> float:
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("the server's resident memory could not be read")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The dashboard under `streamlit run`, on a free port, on a fresh data folder."""
    from models import DEMO_MODEL_PATH, save_checkpoint

    folder = tmp_path_factory.mktemp("browser")
    if DEMO_MODEL_PATH.is_file():
        model = DEMO_MODEL_PATH
    else:  # until the demo model ships, a seeded one of the same architecture
        model = folder / "test_b0.pt"
        save_checkpoint(model, seeded_model(0), class_names=("Cataract", "Normal"), card={"name": "test-b0"})
    with dashboard_server(folder, env={"CATARACT_CAM_MODEL": str(model)}) as running:
        yield running


def _srcs(page) -> list[str]:
    return page.eval_on_selector_all(PANELS, "imgs => imgs.map(i => i.src)")


def _wait_panels(page, old: list[str], changed: tuple[int, ...] = (0, 1, 2), timeout: float = 60_000) -> None:
    """Wait until the three panels are loaded and the ones in ``changed`` show new pictures."""
    page.wait_for_function(
        """([old, changed]) => {
            const imgs = [...document.querySelectorAll('[data-testid="stImage"] img')];
            return imgs.length === 3 && imgs.every(i => i.complete && i.naturalWidth > 0)
                && changed.every(k => imgs[k].src !== old[k]);
        }""",
        arg=[old + [""] * (3 - len(old)), list(changed)],
        timeout=timeout,
    )


def _photo(name: str, folder: Path) -> Path:
    """A photograph of tests/data/csdi; ``mirror:NAME`` is that photograph flipped left to right."""
    if not name.startswith("mirror:"):
        return CSDI / name
    source = CSDI / name.removeprefix("mirror:")
    path = folder / f"mirror_{source.stem}.png"
    if not path.exists():
        Image.open(source).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(path)
    return path


def _upload(page, name: str, folder: Path) -> float:
    old = _srcs(page)
    start = time.perf_counter()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(_photo(name, folder)))
    _wait_panels(page, old)
    return time.perf_counter() - start


def test_review_in_a_real_browser(server, browser, tmp_path: Path) -> None:
    url, process = server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, object] = {"image": MEASURED, "image_size": [2734, 1822]}
    page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
    try:
        page.goto(url)
        page.wait_for_selector('[data-testid="stFileUploaderDropzoneInput"]', state="attached", timeout=60_000)
        page.get_by_text("Drop an eye photograph above").wait_for(timeout=30_000)
        page.screenshot(path=ARTIFACTS / "01_landing.png")

        metrics["warm_up_upload_s"] = round(_upload(page, WARM_UP, tmp_path), 3)  # loads the model
        metrics["upload_to_panels_s"] = round(_upload(page, MEASURED, tmp_path), 3)
        assert page.get_by_text("Grad-CAM Heatmap").count() == 1
        assert page.get_by_text("Prediction", exact=True).count() == 1
        page.screenshot(path=ARTIFACTS / "02_quick_look.png")

        thumb = page.locator('[data-testid="stSlider"] input[type="range"]')
        assert thumb.input_value() == "0.5"
        slider_times = []
        for _ in range(3):
            old = _srcs(page)
            thumb.focus()
            start = time.perf_counter()
            page.keyboard.press("ArrowRight")
            _wait_panels(page, old, changed=(2,))  # only the overlay is redrawn
            slider_times.append(time.perf_counter() - start)
            assert _srcs(page)[:2] == old[:2]
        assert thumb.input_value() == "0.65"
        metrics["slider_to_overlay_s"] = [round(t, 3) for t in slider_times]
        metrics["slider_to_overlay_median_s"] = round(statistics.median(slider_times), 3)

        old = _srcs(page)
        start = time.perf_counter()
        page.locator('[data-testid="stSelectbox"]').filter(has_text="Colormap").click()
        page.get_by_role("option", name="viridis", exact=True).click()
        _wait_panels(page, old, changed=(1, 2))
        metrics["colormap_to_panels_s"] = round(time.perf_counter() - start, 3)
        page.screenshot(path=ARTIFACTS / "03_slider_and_colormap.png")

        for name in MORE:
            _upload(page, name, tmp_path)
        metrics["images_reviewed"] = 2 + len(MORE)
        metrics["server_rss_mb"] = round(_rss_mb(process.pid), 1)

    finally:
        page.close()
    (ARTIFACTS / "browser_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print("\nbrowser metrics:", json.dumps(metrics))
    # Timings are printed, not asserted: this machine's two cores are shared. Memory is not noisy.
    assert metrics["server_rss_mb"] <= MEMORY_LIMIT_MB
