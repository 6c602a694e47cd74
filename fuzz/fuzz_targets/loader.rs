//! The CSV/JSON dataset loader on arbitrary bytes (`parse_bytes` detects the format; the CSV
//! reader is also driven directly): typed errors only, never a panic, hang or blow-up.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = trainer::data::parse_bytes("fuzz", data);
    let _ = trainer::data::read_csv_bytes("fuzz.csv", data);
});
