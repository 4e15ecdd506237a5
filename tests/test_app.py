"""The web demo (python -m ser.app), driven in a real headless Chromium (Debian's, through Playwright).

The server runs the exported package of the five debug systems and their fusion
(``demo_package``); the page's answers are checked against EmotionRecognizer on the same clip.
"""

import concurrent.futures
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ser.emotions import EMOTION_NAMES, EMOTIONS
from ser.inference.app import Limits, analyse, build_parser
from tests.conftest import THREADS

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# Chromium as root in a container, with nothing to reach on the network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_binds_localhost_by_default():
    args = build_parser().parse_args(["--model", "my_model"])
    assert args.host == "127.0.0.1"


@pytest.fixture(scope="module")
def recognizer(demo_package):
    from ser.inference.recognizer import EmotionRecognizer

    return EmotionRecognizer.from_pretrained(demo_package[0])


@pytest.fixture(scope="module")
def bad_files(mini_corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_uploads")
    (folder / "notes.txt").write_text("this is not audio\n")
    soundfile.write(folder / "empty.wav", np.zeros(0, np.float32), 16000)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40)
    first = sorted((mini_corpus / "Audios").glob("*.wav"))[0]
    audio, _ = soundfile.read(first, dtype="float32")
    repeats = int(np.ceil(30 * 16000 / len(audio)))
    soundfile.write(folder / "long.wav", np.tile(audio, repeats)[: 30 * 16000], 16000)
    return folder


def test_bad_input_gets_a_message(recognizer, bad_files, mini_corpus):
    limits = Limits(max_mb=0.5, max_seconds=20.0)
    messages = {name: analyse(recognizer, bad_files / name, limits=limits).error
                for name in ("notes.txt", "empty.wav", "corrupt.wav", "long.wav")}
    assert "notes.txt: not an audio file" in messages["notes.txt"]
    assert "empty.wav: empty audio file" in messages["empty.wav"]
    assert "corrupt.wav" in messages["corrupt.wav"]
    assert "long.wav: 1.0 MB, over the 0.5 MB limit" in messages["long.wav"]
    too_long = analyse(recognizer, bad_files / "long.wav", limits=Limits(max_seconds=20))
    assert "over the 20 s limit" in too_long.error
    assert "over the 5 s limit" in analyse(recognizer, recording=(16000, np.zeros(16000 * 6)),
                                           limits=Limits(max_seconds=5)).error
    assert "no audio" in analyse(recognizer).error
    clip = sorted((mini_corpus / "Audios").glob("*.wav"))[0]
    good = analyse(recognizer, clip)
    assert good.error is None and good.label in EMOTIONS and not good.timeline


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(demo_package, tmp_path_factory):
    """``python -m ser.app --model <package>`` on a free port; yields its URL and process."""
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "OMP_NUM_THREADS": THREADS}
    with open(log, "w") as stream:
        process = subprocess.Popen([sys.executable, "-m", "ser.app", "--model", str(demo_package[0]),
                                    "--port", str(port), "--long_clip", "20", "--window", "4", "--hop", "2"],
                                   cwd=ROOT, env=env, stdout=stream, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 300
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                pytest.fail(f"the app did not start:\n{log.read_text()[-3000:]}")
            time.sleep(1)
    yield url, process
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} missing: apt-get install chromium (see .ci/run)")
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="chromium-profile-"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS)
        yield context
        context.close()


def _upload_and_classify(page, url, path):
    # "networkidle": the page's component scripts have all arrived, so the file input's handler
    # is there when the file is set (CI's loaded 2-core machine once showed no upload in 60 s).
    page.goto(url, timeout=180_000, wait_until="networkidle")
    page.wait_for_selector("#classify", timeout=180_000)
    page.set_input_files("#upload input[type=file]", str(path))
    # Uploaded: the file's row has its download link (its text reads "Uploading..." until the
    # server has the file). The row's visible name is two spans ("long", ".wav"), so it is found
    # by its aria-label, not by text.
    try:
        page.wait_for_selector(f"#upload td.filename[aria-label='{Path(path).name}'] ~ td.download a",
                               timeout=180_000)
    except Exception as error:  # say what the page showed instead, for the CI log
        raise AssertionError(f"{Path(path).name} not shown as uploaded: {error}\n"
                             f"#upload: {page.inner_html('#upload')[:2000]}") from None
    page.click("#classify")
    # The answer, once Gradio's progress tracker ("processing | 1.2s") has left the box.
    page.wait_for_function("(t => /probability|Error/.test(t) && !/processing/.test(t))"
                           "(document.querySelector('#status').innerText)", timeout=180_000)
    return page.inner_text("#status").strip()


@pytest.mark.slow
def test_page_shows_label_chart_and_transcript(server, browser, recognizer, mini_corpus):
    clip = sorted((mini_corpus / "Audios").glob("*.wav"))[3]
    expected = recognizer.classify_file(clip)
    page = browser.new_page()
    status = _upload_and_classify(page, server[0], clip)
    name = f"{EMOTION_NAMES[expected.label]} ({expected.label})"
    assert status.startswith(name), status
    assert page.inner_text("#chart [data-testid=label-output-value]") == name
    bars = page.eval_on_selector_all("#chart meter",
                                     "ms => ms.map(m => [m.getAttribute('aria-label'), m.value])")
    shown = {label: value for label, value in bars}
    assert len(shown) == 8
    for letter in EMOTIONS:
        shown_value = shown[f"{EMOTION_NAMES[letter]} ({letter})"]
        # The server is another process (other thread count): float32 sums differ in the 6th digit.
        assert shown_value == pytest.approx(expected.probabilities[letter], abs=1e-5)
    assert page.input_value("#transcript textarea") == expected.transcript
    assert not page.is_visible("#timeline img")  # a short clip has no timeline
    print(f"\npage: {status}; bars: " + ", ".join(f"{k} {v:.3f}" for k, v in bars))
    page.close()


@pytest.mark.slow
def test_long_clip_gets_a_timeline(server, browser, bad_files):
    page = browser.new_page()
    status = _upload_and_classify(page, server[0], bad_files / "long.wav")
    assert "probability" in status, status
    page.wait_for_selector("#timeline img", timeout=60_000)
    width = page.eval_on_selector("#timeline img", "img => img.naturalWidth")
    assert width > 500
    page.close()


@pytest.mark.slow
def test_text_file_gets_an_error_on_the_page(server, browser, bad_files, mini_corpus):
    page = browser.new_page()
    status = _upload_and_classify(page, server[0], bad_files / "notes.txt")
    assert status.startswith("Error:") and "notes.txt: not an audio file" in status, status
    print(f"\npage: {status}")
    # The server keeps serving: the next upload is classified.
    clip = sorted((mini_corpus / "Audios").glob("*.wav"))[0]
    assert "probability" in _upload_and_classify(page, server[0], clip)
    page.close()


@pytest.mark.slow
def test_bounded_load(server, mini_corpus):
    from gradio_client import Client, handle_file

    url, process = server
    clips = sorted((mini_corpus / "Audios").glob("*.wav"))[:20]
    clients = [Client(url, verbose=False) for _ in range(4)]

    def ask(index):
        start = time.perf_counter()
        answer = clients[index % 4].predict(handle_file(str(clips[index])), None, api_name="/classify")
        return time.perf_counter() - start, answer[0]

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(ask, range(20)))
    total = time.perf_counter() - start
    latencies = [seconds for seconds, _ in answers]
    assert len(answers) == 20 and all("probability" in text for _, text in answers), answers
    assert process.poll() is None and urllib.request.urlopen(url, timeout=10).status == 200
    print(f"\nload test: 20 requests, 4 concurrent: {total:.1f} s in all, {20 / total:.2f} answers/s, "
          f"latency median {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s; server up")


@pytest.mark.slow
def test_serves_no_file_outside_its_assets(server, demo_package):
    import urllib.error

    for path in (ROOT / "README.md", demo_package[0] / "ser_package.json", Path("/etc/passwd")):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{server[0]}gradio_api/file={path}", timeout=10)
        assert refused.value.code in (403, 404), (path, refused.value.code)
