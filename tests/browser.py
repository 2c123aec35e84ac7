"""Reports opened in a real headless browser (Debian's chromium): the DOM as rendered, a
screenshot read back as pixels, and a check that a page would fetch nothing at view time."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

# src=, href= or CSS url() pointing anywhere but into the page itself
_EXTERNAL = re.compile(r"""(?:\bsrc|\bhref)\s*=\s*["']?(?!#|data:)[^"'\s>]+|url\(\s*["']?(?!#|data:)""",
                       re.IGNORECASE)


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def external_references(html: str) -> list[str]:
    """What a page would load from elsewhere (scripts, styles, images, fonts, links)."""
    return _EXTERNAL.findall(html)


@dataclass
class Rendered:
    dom: str
    screenshot: Path
    width: int
    height: int
    pixels: list[tuple[int, int, int]]  # row-major RGB

    def share_of(self, colour: tuple[int, int, int], tolerance: int = 24) -> float:
        near = sum(1 for p in self.pixels
                   if all(abs(a - b) <= tolerance for a, b in zip(p, colour, strict=True)))
        return near / len(self.pixels)

    def share_not_white(self) -> float:
        return sum(1 for p in self.pixels if min(p) < 235) / len(self.pixels)


def render(binary: str, page: Path, work: Path, size: tuple[int, int] = (1200, 1400)) -> Rendered:
    """Open `page` headless (no network needed): its rendered DOM and a screenshot."""
    work.mkdir(parents=True, exist_ok=True)
    common = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--no-first-run", "--disable-extensions", "--disable-background-networking",
              "--hide-scrollbars", f"--user-data-dir={work / 'profile'}",
              f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=3000"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    shot = work / "page.png"
    subprocess.run([*common, f"--screenshot={shot}", page.as_uri()], capture_output=True,
                   timeout=120, check=True)
    with Image.open(shot) as image:
        rgb = image.convert("RGB")
        raw = rgb.tobytes()
        pixels = list(zip(raw[0::3], raw[1::3], raw[2::3], strict=True))
        return Rendered(dom, shot, rgb.width, rgb.height, pixels)
