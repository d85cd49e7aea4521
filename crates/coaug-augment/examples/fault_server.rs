//! The fault-injecting OpenAI-compatible server of the tests, as a process, for demonstrations
//! of remote augmentation surviving faults and kills (scripts/remote-resume-demo.sh).
//!
//! usage: fault_server PORT FAULT_RATE LATENCY_MS
//!   FAULT_RATE: the share of requests that fail (a dropped connection, 429 with Retry-After,
//!   500, malformed JSON, a body cut short, or a reply slower than the client's timeout, in
//!   turn), decided by a hash of the request and its attempt number: the same run, the same
//!   faults. LATENCY_MS: added to every reply.
//! GET /v1/stats → {"asked", "answered", "answered_distinct", "answered_more_than_once"}.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use coaug_augment::remote::fault_server::{Fault, FaultServer};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() == 3, "usage: fault_server PORT FAULT_RATE LATENCY_MS");
    let port: u16 = args[0].parse()?;
    let rate: f64 = args[1].parse()?;
    let latency = Duration::from_millis(args[2].parse()?);
    let server = FaultServer::start_on(
        port,
        Box::new(move |asked| {
            std::thread::sleep(latency);
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (asked.user_text, asked.attempt).hash(&mut h);
            let draw = h.finish();
            if (draw % 10_000) as f64 >= rate * 10_000.0 {
                return None;
            }
            Some(match (draw / 10_000) % 6 {
                0 => Fault::Drop,
                1 => Fault::TooManyRequests { retry_after_s: 0.2 },
                2 => Fault::Status(500),
                3 => Fault::MalformedJson,
                4 => Fault::TruncatedBody,
                _ => Fault::Slow(Duration::from_secs(5)),
            })
        }),
    )?;
    eprintln!("fault server on {} (fault rate {rate}, latency {latency:?})", server.base_url());
    loop {
        std::thread::park();
    }
}
