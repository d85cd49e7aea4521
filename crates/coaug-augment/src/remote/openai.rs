//! The OpenAI chat-completions client behind [`crate::Generator`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::retry::{parse_retry_after, RetryPolicy};
use crate::generator::{DecodeSettings, Generation, GenerationRequest, Generator, RequestFailure};

/// Where the server is and how to talk to it.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// Up to and including the API version, e.g. `http://127.0.0.1:8000/v1`;
    /// `/chat/completions` is appended.
    pub base_url: String,
    /// The model name the server knows (`"model"` of each request); it identifies the weights in
    /// the store's keys, so a rerun against another server serving the same name resumes.
    pub model: String,
    /// Sent as `Authorization: Bearer …`; never printed (see the `Debug` impl).
    pub api_key: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Whole-request limit (connect, send, wait, read); a request over it is retried.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// The request fields that carry the repetition penalty: `repetition_penalty` (vLLM, SGLang,
    /// TGI), `repeat_penalty` (llama.cpp), both (the default: servers ignore the other), or none
    /// (OpenAI's own API, which rejects unknown fields). Sent only when the penalty is not 1.
    pub penalty_fields: Vec<String>,
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("concurrency", &self.concurrency)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("penalty_fields", &self.penalty_fields)
            .finish()
    }
}

impl OpenAiConfig {
    /// 16 requests in flight, 120 s per request, [`RetryPolicy::default`], both penalty fields.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            concurrency: 16,
            timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            penalty_fields: vec!["repetition_penalty".into(), "repeat_penalty".into()],
        }
    }

    fn endpoint(&self) -> String {
        format!("{}/chat/completions", self.base_url.trim_end_matches('/'))
    }
}

/// Completes requests on an OpenAI-compatible server, `concurrency` at a time.
pub struct OpenAiGenerator {
    config: OpenAiConfig,
    agent: ureq::Agent,
    endpoint: String,
}

/// What one attempt came to.
enum Attempt {
    Done(Generation),
    /// Worth another try (after the server's `Retry-After`, when it sent one).
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// This request will not succeed as it is (e.g. 400: over the context length).
    Refused(String),
    /// No request will succeed (bad key, unknown model or endpoint): stop the whole batch.
    Fatal(String),
}

impl OpenAiGenerator {
    pub fn new(config: OpenAiConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(config.concurrency >= 1, "the remote concurrency must be at least 1");
        anyhow::ensure!(config.retry.max_attempts >= 1, "the remote backend needs at least one attempt per request");
        let url = config.base_url.trim();
        anyhow::ensure!(
            url.starts_with("http://") || url.starts_with("https://"),
            "the base URL {url:?} must start with http:// or https:// (e.g. http://127.0.0.1:8000/v1)"
        );
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            // Statuses are read, not raised: 429 and 5xx are retried with the server's Retry-After.
            .http_status_as_error(false)
            .max_idle_connections_per_host(config.concurrency.max(1))
            .build()
            .into();
        let endpoint = config.endpoint();
        Ok(Self { config, agent, endpoint })
    }

    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// The request body of one prompt.
    fn body(&self, request: &GenerationRequest, decoding: &DecodeSettings) -> Value {
        let mut body = json!({
            "model": self.config.model,
            "messages": [
                {"role": "system", "content": request.system_prompt},
                {"role": "user", "content": request.user_text},
            ],
            "max_tokens": decoding.max_new_tokens,
            "temperature": decoding.temperature.max(0.0),
            "top_p": decoding.top_p,
            // Servers that honour it (vLLM, llama.cpp) then sample an item the same way on every
            // run; greedy decoding needs none.
            "seed": request.seed,
            "stream": false,
        });
        let fields = body.as_object_mut().expect("an object");
        if decoding.top_k > 0 {
            fields.insert("top_k".into(), json!(decoding.top_k));
        }
        if decoding.repetition_penalty != 1.0 {
            for name in &self.config.penalty_fields {
                fields.insert(name.clone(), json!(decoding.repetition_penalty));
            }
        }
        body
    }

    /// One HTTP exchange, classified.
    fn attempt(&self, body: &[u8]) -> Attempt {
        let mut call = self.agent.post(&self.endpoint).header("content-type", "application/json");
        if let Some(key) = &self.config.api_key {
            call = call.header("authorization", &format!("Bearer {key}"));
        }
        let mut response = match call.send(body) {
            Ok(r) => r,
            Err(e) => return transport_failure(e),
        };
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let text = match response.body_mut().read_to_string() {
            Ok(t) => t,
            // A body cut short (connection closed before Content-Length) or a read timeout.
            Err(e) => return Attempt::Retry { reason: format!("reading the reply (HTTP {status}): {e}"), retry_after },
        };
        match status {
            200..=299 => match parse_reply(&text) {
                Ok(generation) => Attempt::Done(generation),
                Err(e) => Attempt::Retry { reason: format!("malformed reply: {e:#}"), retry_after: None },
            },
            408 | 409 | 425 | 429 | 500..=599 => Attempt::Retry { reason: format!("HTTP {status}: {}", snippet(&text)), retry_after },
            401 | 403 => Attempt::Fatal(format!(
                "HTTP {status} from {}: the server refused the credentials (the API key comes from --api-key-env): {}",
                self.endpoint,
                snippet(&text)
            )),
            404 => Attempt::Fatal(format!(
                "HTTP 404 from {}: no such endpoint or model {:?} (is --base-url the part up to /v1?): {}",
                self.endpoint,
                self.config.model,
                snippet(&text)
            )),
            _ => Attempt::Refused(format!("HTTP {status}: {}", snippet(&text))),
        }
    }

    /// One request through its retries. `Err` only for a fatal answer.
    fn complete(
        &self,
        request: &GenerationRequest,
        decoding: &DecodeSettings,
        stop: &AtomicBool,
    ) -> Result<Result<Generation, RequestFailure>, String> {
        let body = serde_json::to_vec(&self.body(request, decoding)).expect("JSON values serialise");
        let mut rng = rand::rng();
        let mut last = String::new();
        for attempt in 1..=self.config.retry.max_attempts {
            if stop.load(Ordering::Relaxed) {
                return Err("stopped: another request failed fatally".into());
            }
            match self.attempt(&body) {
                Attempt::Done(generation) => return Ok(Ok(generation)),
                Attempt::Refused(reason) => return Ok(Err(RequestFailure { reason })),
                Attempt::Fatal(reason) => return Err(reason),
                Attempt::Retry { reason, retry_after } => {
                    tracing::debug!(attempt, %reason, "remote generation: will retry");
                    last = reason;
                    if attempt < self.config.retry.max_attempts {
                        std::thread::sleep(self.config.retry.delay(attempt, retry_after, &mut rng));
                    }
                }
            }
        }
        Ok(Err(RequestFailure { reason: format!("{} attempts failed; the last: {last}", self.config.retry.max_attempts) }))
    }
}

/// Transport errors: a bad URL or TLS setup is fatal, everything else (timeouts, refused or
/// dropped connections, broken HTTP) may pass.
fn transport_failure(e: ureq::Error) -> Attempt {
    match e {
        ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::InvalidProxyUrl | ureq::Error::Tls(_) => {
            Attempt::Fatal(format!("cannot send the request: {e}"))
        }
        other => Attempt::Retry { reason: other.to_string(), retry_after: None },
    }
}

/// `choices[0].message.content` and `usage.completion_tokens` of a chat completion.
fn parse_reply(text: &str) -> anyhow::Result<Generation> {
    let reply: Value = serde_json::from_str(text).with_context(|| format!("not JSON: {}", snippet(text)))?;
    let choice = reply.get("choices").and_then(|c| c.get(0)).context("no choices[0] in the reply")?;
    let content = match choice.get("message").and_then(|m| m.get("content")) {
        Some(Value::String(s)) => s.clone(),
        // A model that wrote nothing (null content) wrote the empty string.
        Some(Value::Null) => String::new(),
        _ => bail!("no choices[0].message.content string in the reply"),
    };
    let generated_tokens = reply.pointer("/usage/completion_tokens").and_then(Value::as_u64).unwrap_or(0) as usize;
    Ok(Generation { text: content, generated_tokens })
}

/// The start of a body, for error messages.
fn snippet(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &t[..cut]),
        None => t.to_string(),
    }
}

impl Generator for OpenAiGenerator {
    /// The endpoint's model name: the store keys rows by it (with the prompt, the decoding and
    /// the input), whichever server answered.
    fn fingerprint(&self) -> String {
        format!("openai:{}", self.config.model)
    }

    fn generate(&mut self, requests: &[GenerationRequest], decoding: &DecodeSettings) -> anyhow::Result<Vec<Generation>> {
        let mut replies: Vec<Option<Generation>> = vec![None; requests.len()];
        self.generate_streaming(requests, decoding, &mut |i, reply| {
            replies[i] = Some(reply.map_err(|f| anyhow::anyhow!("request {i} failed: {f}"))?);
            Ok(())
        })?;
        Ok(replies.into_iter().map(|r| r.expect("every request is answered")).collect())
    }

    /// `concurrency` worker threads take the requests in order, each retrying on its own; the
    /// calling thread hands every reply to `sink` as it arrives.
    fn generate_streaming(
        &mut self,
        requests: &[GenerationRequest],
        decoding: &DecodeSettings,
        sink: &mut dyn FnMut(usize, Result<Generation, RequestFailure>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let fatal: Mutex<Option<String>> = Mutex::new(None);
        let workers = self.config.concurrency.min(requests.len());
        let this = &*self;
        let sunk = std::thread::scope(|scope| -> anyhow::Result<()> {
            let (done, replies) = std::sync::mpsc::channel::<(usize, Result<Generation, RequestFailure>)>();
            for _ in 0..workers {
                let done = done.clone();
                let (next, stop, fatal) = (&next, &stop, &fatal);
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests.len() || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match this.complete(&requests[i], decoding, stop) {
                        Ok(reply) => {
                            if done.send((i, reply)).is_err() {
                                break;
                            }
                        }
                        Err(reason) => {
                            stop.store(true, Ordering::Relaxed);
                            fatal.lock().expect("no worker panics holding it").get_or_insert(reason);
                        }
                    }
                });
            }
            drop(done);
            for (i, reply) in replies {
                if let Err(e) = sink(i, reply) {
                    // Workers finish their request in flight and take no other.
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
            Ok(())
        });
        if let Some(reason) = fatal.into_inner().expect("workers joined") {
            bail!("{reason}");
        }
        sunk
    }

    /// Every request the job has at once: the workers never wait for a batch's slowest request,
    /// and the job still commits every `batch_size` replies.
    fn window(&self) -> Option<usize> {
        Some(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_content_and_token_counts() {
        let g =
            parse_reply(r#"{"choices":[{"message":{"role":"assistant","content":"<answer>x</answer>"}}],"usage":{"completion_tokens":5}}"#)
                .unwrap();
        assert_eq!(g, Generation { text: "<answer>x</answer>".into(), generated_tokens: 5 });
        assert_eq!(parse_reply(r#"{"choices":[{"message":{"content":null}}]}"#).unwrap().text, "");
        assert!(parse_reply(r#"{"choices":[]}"#).is_err());
        assert!(parse_reply(r#"{"choices":[{"message":{"content":"cut"#).is_err());
    }

    #[test]
    fn request_bodies_carry_the_decoding_and_only_the_chosen_penalty_fields() {
        let mut config = OpenAiConfig::new("http://127.0.0.1:1/v1/", "m");
        let g = OpenAiGenerator::new(config.clone()).unwrap();
        assert_eq!(g.endpoint, "http://127.0.0.1:1/v1/chat/completions");
        let request = GenerationRequest { system_prompt: "s".into(), user_text: "u".into(), seed: 42 };
        let body = g.body(&request, &DecodeSettings::greedy(16));
        assert_eq!(body["messages"][1]["content"], "u");
        assert_eq!(body["max_tokens"], 16);
        assert_eq!(body["seed"], 42);
        assert_eq!(body["repetition_penalty"], json!(1.2f32));
        assert_eq!(body["repeat_penalty"], json!(1.2f32));
        assert!(body.get("top_k").is_none());

        config.penalty_fields.clear();
        let g = OpenAiGenerator::new(config).unwrap();
        let body = g.body(&request, &DecodeSettings { top_k: 20, ..DecodeSettings::sampled(8, 1) });
        assert!(body.get("repetition_penalty").is_none() && body.get("repeat_penalty").is_none());
        assert_eq!(body["top_k"], 20);
    }

    #[test]
    fn the_api_key_never_shows_in_debug_output() {
        let mut config = OpenAiConfig::new("http://x/v1", "m");
        config.api_key = Some("sk-secret".into());
        assert!(!format!("{config:?}").contains("sk-secret"));
    }

    #[test]
    fn urls_without_a_scheme_are_refused() {
        let err = OpenAiGenerator::new(OpenAiConfig::new("127.0.0.1:8000/v1", "m")).err().unwrap();
        assert!(err.to_string().contains("http://"), "{err}");
    }
}
