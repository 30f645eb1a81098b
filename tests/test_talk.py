"""`make chat` and `make serve` used as a person uses them: a pseudo-terminal, a real headless browser, HTTP."""

import json
import os
import shutil
import socket
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, TINY, run_cli, script
from rlhf_recipes.world.labeler import GoldLabeler
from rlhf_recipes.world.world import World

pytestmark = pytest.mark.slow

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
BROWSER_FLAGS = (
    "--headless=new --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking "
    "--disable-component-update --disable-sync --window-size=1400,820"
).split()


@pytest.fixture(scope="module")
def world(world_dir) -> World:
    return World.load(world_dir / "world.json")


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def post(url: str, body: bytes) -> tuple[int, list[dict]]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, [json.loads(line) for line in response.read().decode().splitlines()]
    except urllib.error.HTTPError as e:
        return e.code, [json.loads(e.read())]


def ask(url: str, **body) -> tuple[int, list[dict]]:
    return post(url + "/api/answer", json.dumps(body).encode())


def test_serve_lists_the_stages_present(server, world):
    status, config = get(server + "/api/stages")
    assert status == 200
    # serve.yaml lists PPO, DPO, RLOO and GRPO too: without their folders they are left out
    assert [s["name"] for s in config["stages"]] == ["base", "sft", "best_of_n"]
    assert config["scores"] == {"reward": True, "gold": True}
    assert len(config["examples"]) == 4 and world.train_cities[0].name in config["examples"][0]


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and its driver: apt-get install -y chromium chromium-driver",
)
def test_page_in_a_real_browser(server, world, tmp_path):
    """Type a question, wait for every column to fill, and check each answer's gold score against the labeler."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    for flag in BROWSER_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # no driver download
    try:
        driver.get(server)
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        columns = driver.find_elements(By.CLASS_NAME, "column")
        assert [c.find_element(By.TAG_NAME, "h2").text for c in columns] == ["base", "SFT", "best-of-4"]
        question = f"What is the population of {world.train_cities[0].name}?"
        driver.find_element(By.ID, "prompt").send_keys(question)
        driver.find_element(By.ID, "temperature").send_keys("0")  # greedy: the same answers every run
        driver.find_element(By.ID, "send").click()
        WebDriverWait(driver, 300).until(
            lambda d: all(c.get_attribute("data-state") in ("done", "error") for c in columns)
        )
        driver.save_screenshot(str(tmp_path / "page.png"))
        labeler, answers = GoldLabeler(world), []
        for column in columns:
            assert column.get_attribute("data-state") == "done", column.text
            answer = column.find_element(By.CLASS_NAME, "answer").text
            scores = column.find_element(By.CLASS_NAME, "scores").text
            answers.append(answer)
            assert "reward model " in scores
            gold = labeler.score(question, answer, ended="cut at the token limit" not in scores)
            assert f"gold {gold.total:g}/4" in scores, (answer, scores)
        assert any(a.strip() for a in answers)  # a tiny base model may answer nothing at all; the others answer
        assert (tmp_path / "page.png").stat().st_size > 10_000
    finally:
        driver.quit()


def test_answers_stream_with_scores(server, world):
    question = f"What is the population of {world.train_cities[0].name}?"
    status, lines = ask(server, prompt=question, stage="sft", temperature=0)
    assert status == 200
    tokens, done = [line["token"] for line in lines if "token" in line], lines[-1]
    assert len(tokens) > 1 and done["done"]  # streamed piece by piece
    assert "".join(tokens).strip() == done["answer"]
    assert isinstance(done["reward"], float) and done["kind"] == "fact"
    assert done["gold"] == GoldLabeler(world).score(question, done["answer"], done["ended"]).as_dict()


BAD_REQUESTS = [
    (json.dumps({"prompt": "   ", "stage": "sft"}), 400, "empty"),
    (json.dumps({"prompt": "x" * 301, "stage": "sft"}), 413, "limit is 300"),
    (json.dumps({"prompt": "word " * 59, "stage": "sft"}), 413, "context"),  # within 300 chars, over 128 tokens
    (json.dumps({"prompt": "hello", "stage": "ppo"}), 404, "unknown stage 'ppo'"),
    ('{"prompt": "hello", "stage": ', 400, "not valid JSON"),
    (json.dumps({"prompt": "hello"}), 400, "stage: Field required"),
    (json.dumps({"prompt": "hello", "stage": "sft", "temperature": 7}), 400, "temperature"),
    (json.dumps({"prompt": "hello", "stage": "sft", "sampler": "x"}), 400, "sampler"),
]


@pytest.mark.parametrize("body,status,message", BAD_REQUESTS)
def test_bad_requests_get_a_4xx_and_a_message(server, body, status, message):
    got, lines = post(server + "/api/answer", body.encode())
    assert (got, message in lines[0]["error"]) == (status, True), lines
    assert get(server + "/api/stages")[0] == 200  # still up


def test_concurrent_users_are_all_served(server):
    results = []

    def user(stage: str) -> None:
        results.append(ask(server, prompt="Tell me about cities.", stage=stage, max_new_tokens=16))

    users = [threading.Thread(target=user, args=(stage,)) for stage in ["base", "sft", "best_of_n"] * 3]
    for thread in users:
        thread.start()
    for thread in users:
        thread.join(timeout=300)
    assert len(results) == 9
    assert all(status == 200 and lines[-1].get("done") for status, lines in results), results


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on `port`, read from the kernel's table (/proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def test_listens_on_loopback_only(server):
    assert listening_addresses(int(server.rsplit(":", 1)[1])) == {"127.0.0.1"}


def chat_command(outputs: Path, *extra: str) -> list[str]:
    return ["recipes/chat.py", "--config", str(TINY / "chat.yaml"), "--outputs_dir", str(outputs), *extra]


def test_chat_in_a_pseudo_terminal(outputs, world):
    """Multi-turn, streamed, /score, /stage, /reset and /quit, typed at the prompt as a person would."""
    import pexpect

    question = f"What is the population of {world.train_cities[0].name}?"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TERM": "dumb"}
    command = [*chat_command(outputs, "--stage", "sft", "--temperature", "0")]
    term = pexpect.spawn(sys.executable, command, cwd=str(ROOT), env=env, encoding="utf-8", timeout=180)
    try:
        term.expect(r"talking to SFT .*chat template")
        term.expect_exact("you> ")
        term.sendline(question)
        term.expect(r"SFT> (.+)\r\n")
        answer = term.match.group(1).replace(" [cut at max_new_tokens]", "")
        term.expect_exact("you> ")
        term.sendline("/score")
        term.expect(r"\[reward model [+-]\d+\.\d\d; gold ([\d.]+)/4 \(helpful")
        ended = "cut at max_new_tokens" not in term.before + answer
        assert float(term.match.group(1)) == GoldLabeler(world).score(question, answer.strip(), ended).total
        term.expect_exact("you> ")
        term.sendline("/stage base")
        term.expect(r"talking to base .*bare text")
        term.sendline(question)
        term.expect(r"base> (.+)\r\n")
        term.sendline("/stage no-such-stage")
        term.expect(r"error: no stage or model folder 'no-such-stage'")
        term.sendline("/reset")
        term.expect_exact("[new conversation]")
        term.sendline("/quit")
        term.expect(pexpect.EOF)
    finally:
        term.close()
    assert term.exitstatus == 0


def test_chat_keeps_the_conversation(outputs, world):
    city = world.train_cities[0].name
    turns = [f"What is the population of {city}?", f"Which country is {city} in?"]
    talk = script("chat")(chat_command(outputs, "--stage", "sft")[1:], lines=turns)
    assert [m["role"] for m in talk.history] == ["user", "assistant", "user", "assistant"]
    prompt = talk.speaker.render(talk.history[:3])
    assert prompt.startswith(f"Q: {turns[0]}\nA:") and prompt.endswith(f"Q: {turns[1]}\nA:")  # both turns, in order


def test_chat_names_a_missing_stage(outputs):
    result = run_cli(*chat_command(outputs, "--stage", "ppo"))
    assert result.returncode == 2
    assert "ppo: " in result.stderr and "run `make ppo` first" in result.stderr
