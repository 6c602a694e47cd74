//! The request layer on arbitrary bodies, for every protocol and content type, against a real
//! bundle (the committed ESG parity fixture: numeric and categorical features, missing
//! cells): a typed error answer or an answer, never a panic, a hang or unbounded work.
#![no_main]

use std::sync::OnceLock;

use inference::request::{self, Limits, Protocol, Transport};
use libfuzzer_sys::fuzz_target;

fn model() -> &'static inference::Model {
    static MODEL: OnceLock<inference::Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/parity/esg_relu/model.safetensors");
        inference::Model::from_bytes(&std::fs::read(path).expect("fixture")).expect("fixture loads")
    })
}

const PROTOCOLS: [Protocol; 4] = [Protocol::ApiMl, Protocol::KServeV1, Protocol::OipV2, Protocol::Mlflow];
const TYPES: [&str; 4] = ["application/json", "text/csv", "application/json; charset=utf-8", "application/octet-stream"];

fuzz_target!(|data: &[u8]| {
    // The first byte picks the protocol, content type and a binary-header length.
    let Some((&pick, body)) = data.split_first() else { return };
    let protocol = PROTOCOLS[usize::from(pick & 3)];
    let content_type = TYPES[usize::from((pick >> 2) & 3)];
    let header = (pick & 0x80 != 0).then(|| usize::from(pick >> 4) * 7 % (body.len() + 1));
    let limits = Limits { max_rows: 64, max_explain_rows: 2 };
    let reply = request::handle(
        model(),
        protocol,
        body,
        Transport { content_type: Some(content_type), json_header_length: header },
        &limits,
    );
    assert!((200..600).contains(&reply.status));
    if reply.status != 200 {
        // Error answers are the protocol's JSON (MLflow's media-type errors are text).
        assert!(reply.content_type == "text/plain" || serde_json::from_slice::<serde_json::Value>(&reply.body).is_ok());
    }
});
