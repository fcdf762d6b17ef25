//! Fuzz target: arbitrary bytes as a webhook request must never panic the verifier or the
//! parsers.
//!
//! The input is split into a provider byte, a header blob and a body: byte 0 picks the
//! provider, then a big-endian u16 gives the header blob's length. The blob holds one
//! `name: value` header per line. The rest is the body. Run with
//! `cargo fuzz run webhook_parse --sanitizer none` from `crates/webhook`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_webhook::{Headers, Provider, parse, push_changes, sign, verify_and_parse};

const SECRET: &[u8] = b"fuzz-secret";

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let provider = Provider::ALL[usize::from(selector) % Provider::ALL.len()];
    let (blob, body) = match rest {
        [hi, lo, tail @ ..] => {
            let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
            tail.split_at(len)
        }
        _ => (&[][..], rest),
    };
    let mut pairs: Vec<(String, String)> = String::from_utf8_lossy(blob)
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let headers = Headers::new(&pairs);
    let _ = verify_and_parse(provider, &headers, body, SECRET);
    let _ = parse(provider, &headers, body);
    let _ = push_changes(provider, &headers, body);

    // With the high bit of the selector set, sign the body correctly so the fuzzer also
    // reaches the parsers through the verified path.
    if selector & 0x80 != 0 {
        pairs.push(("X-Hub-Signature-256".into(), sign(SECRET, body)));
        pairs.push(("X-Hub-Signature".into(), sign(SECRET, body)));
        pairs.push(("X-Sluice-Signature".into(), sign(SECRET, body)));
        pairs.push(("X-Gitlab-Token".into(), "fuzz-secret".into()));
        let headers = Headers::new(&pairs);
        let _ = verify_and_parse(provider, &headers, body, SECRET);
    }
});
