"""backend="openai": the Python Augmenter against a local OpenAI-compatible server that fails
each request once (500), then answers "<answer>expansion of: {user text}</answer>"."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import coaug


class _Handler(BaseHTTPRequestHandler):
    asked = {}
    answered = {}
    auth = []
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        user = body["messages"][1]["content"]
        with self.lock:
            self.auth.append(self.headers.get("authorization"))
            n = self.asked[user] = self.asked.get(user, 0) + 1
        if n == 1:
            self._reply(500, {"error": "try again"})
            return
        with self.lock:
            self.answered[user] = self.answered.get(user, 0) + 1
        self._reply(200, {"choices": [{"message": {"role": "assistant", "content": f"<answer>expansion of: {user}</answer>"}}], "usage": {"completion_tokens": 5}})

    def _reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.asked, _Handler.answered, _Handler.auth = {}, {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def test_openai_backend_retries_stores_and_resumes(server, tmp_path, monkeypatch):
    monkeypatch.setenv("COAUG_TEST_KEY", "sk-test")
    store = str(tmp_path / "s.sqlite")
    queries = {"q1": "vitamin D and bones", "q2": "heart disease risk"}
    aug = coaug.Augmenter("served-model", backend="openai", base_url=server, api_key_env="COAUG_TEST_KEY", store=store, concurrency=2)
    assert aug.fingerprint == "openai:served-model"
    expansions = aug.queries(queries)
    assert expansions == {qid: [f"expansion of: {text}"] for qid, text in queries.items()}
    assert _Handler.answered == {text: 1 for text in queries.values()}
    assert set(_Handler.auth) == {"Bearer sk-test"}
    # Everything is in the store: a new augmenter asks the server nothing.
    asked = sum(_Handler.asked.values())
    again = coaug.Augmenter("served-model", backend="openai", base_url=server, store=store)
    assert again.queries(queries) == expansions
    assert sum(_Handler.asked.values()) == asked


def test_openai_backend_needs_a_url_and_a_model():
    with pytest.raises(ValueError, match="base_url"):
        coaug.Augmenter("m", backend="openai")
    with pytest.raises(ValueError, match="model"):
        coaug.Augmenter(backend="openai", base_url="http://127.0.0.1:1/v1")
