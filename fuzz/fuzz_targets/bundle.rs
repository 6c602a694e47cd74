//! `Bundle::from_bytes` / `Model::from_bytes` on arbitrary bytes: typed errors only, and a
//! model that loads must predict without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = inference::Model::from_bytes(data) {
        let row = vec![inference::ValueRef::Missing; model.num_features()];
        let _ = model.predict(row.into_iter());
    }
    if let Some((json, weights)) = data.split_first().map(|(n, rest)| rest.split_at((*n as usize).min(rest.len()))) {
        let _ = inference::Bundle::from_parts(weights, &String::from_utf8_lossy(json));
    }
});
