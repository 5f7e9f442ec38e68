"""Open a report in headless Chromium and say what a reader would see broken.

No driver library: Chromium's own `--dump-dom` loads a copy of the page with a small
script in its <head> that records script errors and console.error calls, and on `load`
writes every image's natural width and every table-of-contents link's target into the
DOM, which Chromium prints. `--enable-logging=stderr` adds the browser's own console
lines (a resource that failed to load). `--screenshot` keeps a picture of the page."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from bertctl.errors import BertctlError

PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  window.__errors.push(String(e.message || (e.target && (e.target.src || e.target.href)) || 'error'));
}, true);
(function () { var err = console.error; console.error = function () {
  window.__errors.push(Array.prototype.join.call(arguments, ' ')); return err.apply(console, arguments); }; })();
window.addEventListener('load', function () {
  var imgs = Array.prototype.map.call(document.images, function (i) {
    return {alt: i.alt, width: i.naturalWidth, complete: i.complete}; });
  var links = Array.prototype.map.call(document.querySelectorAll('nav a[href^="#"]'), function (a) {
    var id = decodeURIComponent(a.getAttribute('href').slice(1));
    return {href: a.getAttribute('href'), found: !!document.getElementById(id)}; });
  var pre = document.createElement('pre'); pre.id = '__check';
  pre.textContent = JSON.stringify({images: imgs, links: links, errors: window.__errors});
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _flags(profile: Path) -> list[str]:
    # --no-sandbox: CI containers run as root, where Chromium refuses its sandbox
    return ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            "--disable-background-networking", "--disable-sync", "--disable-component-update",
            f"--user-data-dir={profile}", "--hide-scrollbars"]


def check(page: Path, screenshot: Path | None = None, timeout: float = 120) -> dict:
    """{"images": [{alt, width, complete}], "links": [{href, found}], "errors": [...],
    "console": [browser console lines at warning level or above]} for the page at `page`."""
    exe = chromium()
    if exe is None:
        raise BertctlError("no Chromium found", fix="apt-get install -y chromium")
    page = Path(page).resolve()
    text = page.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="bertctl-browser-") as tmp:
        probe = Path(tmp) / page.name  # the copy with the probe script; the report stays as written
        probe.write_text(text.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
        res = subprocess.run([exe, *_flags(Path(tmp) / "profile"), "--enable-logging=stderr", "--v=0",
                              "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                             capture_output=True, text=True, timeout=timeout)
        found = re.search(r'<pre id="__check">(.*?)</pre>', res.stdout, re.S)
        if not found:
            raise BertctlError(f"Chromium printed no page (exit {res.returncode}): {res.stderr[-500:]}",
                               fix="run the command above by hand to see why")
        import html

        result = json.loads(html.unescape(found.group(1)))
        # the browser's console lines: INFO:CONSOLE is console.log; errors are logged at WARNING/ERROR
        result["console"] = [line for line in res.stderr.splitlines()
                             if "CONSOLE" in line and ":INFO:CONSOLE" not in line]
        if screenshot is not None:
            subprocess.run([exe, *_flags(Path(tmp) / "profile2"), f"--screenshot={Path(screenshot).resolve()}",
                            "--window-size=1280,2000", page.as_uri()], capture_output=True, timeout=timeout)
    return result
