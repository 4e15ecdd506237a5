"""The web page (python -m ser.app), driven in a real headless Chromium (Debian's, through Playwright).

The server runs the exported package of the five debug systems and their fusion
(``demo_package``); the page's answers are checked against EmotionRecognizer on the same clip.
Chromium's fake media device plays a WAV as the microphone, for the live tab. Screenshots go to
the test's temporary folder; their paths are printed (``pytest -s``).
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
    limits = Limits(max_mb=0.5, max_seconds=60.0)
    messages = {name: analyse(recognizer, bad_files / name, limits=limits).error
                for name in ("notes.txt", "empty.wav", "corrupt.wav", "long.wav")}
    assert "notes.txt: not an audio file" in messages["notes.txt"]
    assert "empty.wav: empty audio file" in messages["empty.wav"]
    assert "corrupt.wav" in messages["corrupt.wav"]
    assert "long.wav: 1.0 MB, over the 0.5 MB upload limit" in messages["long.wav"]
    too_long = analyse(recognizer, bad_files / "long.wav", limits=Limits(max_seconds=20))
    assert "over the 20 s limit" in too_long.error
    assert "over the 5 s limit" in analyse(recognizer, recording=(16000, np.zeros(16000 * 6)),
                                           limits=Limits(max_seconds=5)).error
    assert "no audio" in analyse(recognizer).error
    clip = sorted((mini_corpus / "Audios").glob("*.wav"))[0]
    good = analyse(recognizer, clip)
    assert good.error is None and good.label in EMOTIONS and not good.timeline


def _damaged_copy(package, folder, relative, how):
    """``package`` hard-linked into ``folder`` (no copy of its weights), then one file damaged.

    A damaged file is written anew (never through its link, which the original shares).
    """
    import json
    import shutil

    from ser.inference.package import MANIFEST, fingerprint_package_files

    shutil.copytree(package, folder, copy_function=os.link)
    (path,) = folder.glob(relative)
    data = path.read_bytes()
    path.unlink()
    if how != "remove":
        path.write_bytes(data[: len(data) // 2])
    if how == "truncate, fingerprints rewritten":
        # As a package exported from a damaged model folder, or edited to pass the fingerprint check.
        manifest = json.loads((folder / MANIFEST).read_text())
        manifest["files"] = fingerprint_package_files(folder)
        (folder / MANIFEST).unlink()
        (folder / MANIFEST).write_text(json.dumps(manifest))
    return path


@pytest.mark.parametrize(
    ("relative", "how"),
    [
        ("systems/system_a/model.safetensors", "truncate"),
        ("whisper/*/model.bin", "truncate"),
        ("whisper/*/tokenizer.json", "truncate"),
        ("systems/system_d/transcriber.json", "remove"),
        ("systems/system_a/model.safetensors", "truncate, fingerprints rewritten"),
        ("whisper/*/tokenizer.json", "truncate, fingerprints rewritten"),
    ],
)
def test_a_damaged_package_stops_the_app_at_start_up(demo_package, tmp_path, relative, how):
    """``python -m ser.app`` exits with one line naming the damaged file (exit 2); it does not serve."""
    pytest.importorskip("gradio")
    damaged = _damaged_copy(demo_package[0], tmp_path / "package", relative, how)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "OMP_NUM_THREADS": THREADS}
    # A server that started would still run at the timeout, and fail the test.
    done = subprocess.run([sys.executable, "-m", "ser.app", "--model", str(tmp_path / "package"), "--port",
                           str(_free_port())], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("ser.app: error:")]
    assert len(errors) == 1 and str(damaged) in errors[0], done.stderr[-3000:]


@pytest.mark.slow
def test_systems_parent_folder_holding_one_seed_is_served_and_two_seeds_are_refused(demo_package, tmp_path):
    """``--systems results/system_a`` stands for its one seed folder, as in ser.predict and ser.export."""
    pytest.importorskip("gradio")
    import shutil

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "OMP_NUM_THREADS": THREADS}
    parent = tmp_path / "system_a"
    shutil.copytree(demo_package[1] / "system_a" / "1993", parent / "1993")
    port = _free_port()
    log = tmp_path / "app.log"
    with open(log, "w") as stream:
        process = subprocess.Popen([sys.executable, "-m", "ser.app", "--systems", str(parent),
                                    "--port", str(port)],
                                   cwd=ROOT, env=env, stdout=stream, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while True:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
                break
            except OSError:
                assert process.poll() is None and time.time() < deadline, log.read_text()[-3000:]
                time.sleep(1)
        assert "gradio" in page.lower()
    finally:
        process.terminate()
        process.wait(timeout=30)
    shutil.copytree(parent / "1993", parent / "2024")
    done = subprocess.run([sys.executable, "-m", "ser.app", "--systems", str(parent),
                           "--port", str(_free_port())],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("ser.app: error:")]
    assert len(errors) == 1 and "several runs hold hyperparams.yaml (1993, 2024)" in errors[0], done.stderr


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


#: Each server's log file, by its URL (what the server printed, for a failure's message).
SERVER_LOGS = {}


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
    SERVER_LOGS[url] = log
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
def microphone_wav(mini_corpus, tmp_path_factory):
    """What Chromium's fake microphone plays (in a loop): mini corpus turns, 44.1 kHz stereo."""
    from scipy.signal import resample_poly

    clips = sorted((mini_corpus / "Audios").glob("*.wav"))[:4]
    turns = [soundfile.read(path, dtype="float32")[0] for path in clips]
    mono = resample_poly(np.concatenate(turns), 441, 160).astype(np.float32)
    path = tmp_path_factory.mktemp("microphone") / "microphone.wav"
    soundfile.write(path, np.stack([mono, mono], axis=1), 44100, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def browser(microphone_wav):
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} missing: apt-get install chromium (see .ci/run)")
    # A fake microphone that plays microphone_wav, allowed without asking.
    media = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-audio-capture={microphone_wav}"]
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="chromium-profile-"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS + media)
        yield context
        context.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    return tmp_path_factory.mktemp("screenshots")


def _screenshot(page, folder, name):
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"\nscreenshot: {path}")
    return path


def _open(page, url):
    # The page is there once Gradio has rendered its components (Gradio's asset requests never
    # all settle for Playwright's "networkidle" on this page).
    page.goto(url, timeout=180_000, wait_until="load")
    page.wait_for_selector("#classify", timeout=180_000)


def _wait_for_status(page):
    """The answer, once Gradio's progress tracker ("processing | 1.2s") has left the box."""
    page.wait_for_function("(t => /probability|Error/.test(t) && !/processing|timeline \\d|finding/.test(t))"
                           "(document.querySelector('#status').innerText)", timeout=600_000)
    return page.inner_text("#status").strip()


def _upload_and_classify(page, url, path):
    _open(page, url)
    # Uploaded: the file's row has its download link (its text reads "Uploading..." until the
    # server has the file). The row's visible name is two spans ("long", ".wav"), so it is found
    # by its aria-label, not by text. The file input's handler may arrive after the element on a
    # loaded machine: the file is set again while no row shows.
    uploaded = f"#upload td.filename[aria-label='{Path(path).name}'] ~ td.download a"
    for attempt in range(3):
        page.set_input_files("#upload input[type=file]", str(path))
        try:
            page.wait_for_selector(uploaded, timeout=120_000)
            break
        except Exception as error:  # say what the page showed instead, for the CI log
            if attempt == 2 or page.query_selector("#upload td.filename"):
                raise AssertionError(f"{Path(path).name} not shown as uploaded: {error}\n"
                                     f"#upload: {page.inner_html('#upload')[:2000]}") from None
    page.click("#classify")
    return _wait_for_status(page)


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


def test_clip_within_the_duration_limit_is_accepted_whatever_its_bytes(recognizer, mini_corpus, tmp_path):
    """A 2-minute 44.1 kHz stereo WAV (21 MB) is within the 300 s the page promises."""
    path = _two_minute_stereo(mini_corpus, tmp_path)
    assert path.stat().st_size > 21e6
    limits = Limits()
    assert limits.upload_mb * 1e6 > path.stat().st_size
    info = soundfile.info(str(path))
    assert info.duration == pytest.approx(120) and info.samplerate == 44100 and info.channels == 2
    assert "over the 60 s limit" in analyse(recognizer, path, limits=Limits(max_seconds=60)).error


def _two_minute_stereo(mini_corpus, folder):
    from scipy.signal import resample_poly

    turns = [soundfile.read(p, dtype="float32")[0] for p in sorted((mini_corpus / "Audios").glob("*.wav"))]
    pieces, total = [], 0
    for turn in turns:  # speech with one second of room tone between turns
        pieces += [turn, np.random.default_rng(len(pieces)).normal(0, 0.002, 16000).astype(np.float32)]
        total += len(turn) + 16000
        if total >= 120 * 16000:
            break
    mono = resample_poly(np.concatenate(pieces)[: 120 * 16000], 441, 160).astype(np.float32)
    path = folder / "two_minutes_44k_stereo.wav"
    soundfile.write(path, np.stack([mono, 0.8 * mono], axis=1), 44100, subtype="PCM_16")
    return path


@pytest.mark.slow
def test_page_says_which_model_and_that_it_is_a_toy(server, browser, screenshots):
    page = browser.new_page()
    _open(page, server[0])
    line = page.inner_text("#model")
    assert "my_model" in line and "Demo toy" in line and "synthetic mini corpus" in line, line
    assert "300 s (5 min)" in page.inner_text("#clip_tab")
    _screenshot(page, screenshots, "page_opened")
    print(f"model line: {line}")
    page.close()


@pytest.mark.slow
def test_example_clip_is_classified_and_played_back(server, browser, recognizer, screenshots):
    from ser.inference.app import example_clips

    page = browser.new_page()
    _open(page, server[0])
    first = example_clips()[0]
    page.click(f"#examples button:has-text('{first.stem}')")
    page.wait_for_selector(f"#upload td.filename[aria-label='{first.name}'] ~ td.download a", timeout=120_000)
    page.click("#classify")
    status = _wait_for_status(page)
    expected = recognizer.classify_file(first)
    assert status.startswith(f"{EMOTION_NAMES[expected.label]} ({expected.label})"), status
    # The player: its download link serves the clip, and its waveform player holds it.
    link = page.wait_for_selector(f"#player a[href*='{first.name}']", state="attached", timeout=60_000)
    assert urllib.request.urlopen(link.get_attribute("href"), timeout=30).status == 200
    # The waveform player's media element (Playwright's selectors reach into its shadow DOM); it
    # loads the clip from a blob only when played, so the served link above is what it plays.
    page.wait_for_selector("#player audio", state="attached", timeout=60_000)
    _screenshot(page, screenshots, "example_classified")
    print(f"example {first.name}: {status}")
    page.close()


@pytest.mark.slow
def test_two_minute_stereo_upload_gets_a_vad_timeline_with_progress(server, browser, mini_corpus, tmp_path,
                                                                     screenshots):
    path = _two_minute_stereo(mini_corpus, tmp_path)
    page = browser.new_page()
    status = _upload_and_classify(page, server[0], path)  # the page's default: VAD segments
    assert "probability" in status and "speech segments (Silero VAD)" in status, status
    assert "120.0 s" in status
    page.wait_for_selector("#timeline img", timeout=60_000)
    assert page.eval_on_selector("#timeline img", "img => img.naturalWidth") > 500
    _screenshot(page, screenshots, "two_minute_vad_timeline")
    print(f"21 MB two-minute upload: {status}")
    page.close()


@pytest.mark.slow
def _start_recording(page):
    """Press Record until the record button has turned into a stop button (recording started).

    On a loaded machine the click may come before Gradio has attached its handler.
    """
    for attempt in range(3):
        page.click("#live button.record-button")
        try:
            page.wait_for_selector("#live button.stop-button", timeout=60_000)
            return
        except Exception as error:
            if attempt == 2:
                raise AssertionError(f"the microphone did not start recording: {error}\n"
                                     f"#live: {page.inner_html('#live')[:2000]}") from None


def test_live_microphone_updates_a_rolling_timeline(server, browser, screenshots):
    page = browser.new_page()
    _open(page, server[0])
    page.click("button[role=tab]:has-text('Live microphone')")
    _start_recording(page)
    # Three updates: the fake microphone has streamed at least three hops and each was classified.
    # Under the whole suite's load a stream once started and brought no update in 300 s (cause not
    # found; the server had logged nothing): such a stream is stopped and started once more, as a
    # user would, and the test says so.
    three = "/Update ([3-9]|[1-9][0-9])\\b/.test(document.querySelector('#live_status').innerText)"
    for attempt in range(2):
        try:
            page.wait_for_function(three, timeout=240_000)
            break
        except Exception as error:  # what the page and the server showed instead, for the CI log
            if attempt == 1 or page.inner_text("#live_status").strip():
                raise AssertionError(f"no third live update: {error}\n"
                                     f"#live_status: {page.inner_text('#live_status')[:2000]}\n"
                                     f"server log: {SERVER_LOGS[server[0]].read_text()[-3000:]}") from None
            print("\nlive: no update after 240 s; recording stopped and started again")
            page.click("#live button.stop-button")
            _start_recording(page)
    page.wait_for_selector("#live_timeline img", timeout=60_000)
    status = page.inner_text("#live_status")
    assert "from the chunk's arrival to this timeline" in status and "median" in status, status
    _screenshot(page, screenshots, "live_microphone")
    print(f"live: {status}")
    page.close()
