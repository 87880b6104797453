"""Open a report in headless Chromium: does every image load, does anything overflow?

Uses the `chromium` binary directly (no Python driver): a copy of the page gets a script
that, once the page has loaded, writes what it measured into an attribute of <body>;
`--dump-dom` prints the DOM after it ran. Install the browser with
`apt-get install chromium` (Debian/Ubuntu: `chromium` or `chromium-browser`).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

BINARIES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--disable-dev-shm-usage", "--no-first-run")  # fmt: skip

_PROBE = """<script>
window.addEventListener('load', () => {
  const root = document.documentElement, width = root.clientWidth;
  const imgs = Array.from(document.images);
  const out = {
    images: imgs.length,
    loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    page_width: width,
    scroll_width: root.scrollWidth,
    images_past_edge: imgs.filter(i => i.getBoundingClientRect().right > width + 1).length,
    image_widths: imgs.map(i => Math.round(i.getBoundingClientRect().width)),
  };
  document.body.setAttribute('data-probe', JSON.stringify(out));
});
</script>"""


def chromium() -> str | None:
    """The path of a Chromium-like browser, or None."""
    return next((p for p in map(shutil.which, BINARIES) if p), None)


def probe(page: Path, width: int = 1100, height: int = 900, timeout: float = 120) -> dict:
    """Open `page` at `width` x `height` pixels and return what the page measured: images,
    loaded (images that decoded), page_width, scroll_width (> page_width: the page scrolls
    sideways, something overflows), images_past_edge, image_widths."""
    binary = chromium()
    assert binary, "no Chromium found"
    copy = page.with_name(f".probe-{page.name}")
    copy.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    try:
        res = subprocess.run(
            [binary, *FLAGS, f"--window-size={width},{height}", "--virtual-time-budget=10000",
             "--dump-dom", copy.resolve().as_uri()],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    finally:
        copy.unlink()
    found = re.search(r'data-probe="([^"]*)"', res.stdout)
    assert found, f"the page reported nothing (chromium exit {res.returncode}): {res.stderr[-800:]}"
    return json.loads(html.unescape(found.group(1)))


def screenshot(page: Path, png: Path, width: int = 1100, height: int = 6000) -> Path:
    """A PNG of the page's first `height` pixels (for a person to look at)."""
    binary = chromium()
    assert binary, "no Chromium found"
    subprocess.run(
        [binary, *FLAGS, f"--window-size={width},{height}", f"--screenshot={png}",
         page.resolve().as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    return png
