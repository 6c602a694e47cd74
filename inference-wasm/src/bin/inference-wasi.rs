//! `inference-wasi`: the inference core as a command, for WASI hosts (wasmtime, Spin,
//! Fastly-style edges) and natively alike. A bundle path and a request body on stdin give the
//! answer on stdout, through the same request layer as the server, the wasm package and the
//! edge worker:
//!
//! ```text
//! inference-wasi MODEL.safetensors [--protocol api_ml|kserve_v1|oip_v2|mlflow]
//!                [--content-type TYPE] [--max-rows N] [--no-verify-hash]  < body  > answer
//! ```
//!
//! A body that is a bare JSON array is read as rows (`{"instances": [...]}`). The exit status
//! is 0 for an answer, 1 for an error answer (its JSON, in the protocol's shape, still goes to
//! stdout), and 2 for a bad command line or an unreadable bundle (the message goes to stderr).

use std::io::{Read, Write};
use std::process::ExitCode;

use inference::bundle::LoadOptions;
use inference::request::{self, Limits, Protocol, Transport};
use inference::Model;

const USAGE: &str = "usage: inference-wasi MODEL.safetensors [--protocol api_ml|kserve_v1|oip_v2|mlflow] \
[--content-type TYPE] [--max-rows N] [--no-verify-hash] < body > answer";

struct Args {
    bundle: String,
    protocol: Protocol,
    content_type: String,
    max_rows: usize,
    verify_hash: bool,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut bundle = None;
    let mut a = Args {
        bundle: String::new(),
        protocol: Protocol::ApiMl,
        content_type: request::JSON.to_owned(),
        max_rows: request::DEFAULT_MAX_ROWS,
        verify_hash: true,
    };
    while let Some(arg) = argv.next() {
        let mut value = |flag: &str| argv.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--protocol" => {
                let p = value("--protocol")?;
                a.protocol = Protocol::from_name(&p).ok_or_else(|| format!("unknown protocol {p:?}"))?;
            }
            "--content-type" => a.content_type = value("--content-type")?,
            "--max-rows" => {
                a.max_rows = value("--max-rows")?.parse().map_err(|_| "--max-rows needs a whole number".to_owned())?
            }
            "--no-verify-hash" => a.verify_hash = false,
            "-h" | "--help" => return Err(String::new()),
            f if f.starts_with("--") => return Err(format!("unknown flag {f}")),
            path if bundle.is_none() => bundle = Some(path.to_owned()),
            extra => return Err(format!("unexpected argument {extra:?}")),
        }
    }
    a.bundle = bundle.ok_or("missing MODEL.safetensors")?;
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("inference-wasi: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let read = |path: &str| -> std::io::Result<Vec<u8>> {
        if std::fs::metadata(path)?.is_dir() {
            return Err(std::io::Error::other("is a directory, not a bundle file"));
        }
        std::fs::read(path)
    };
    let model = match read(&args.bundle).map_err(|e| e.to_string()).and_then(|b| {
        Model::from_bytes_with(&b, LoadOptions { verify_hash: args.verify_hash }).map_err(|e| e.to_string())
    }) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("inference-wasi: {}: {e}", args.bundle);
            return ExitCode::from(2);
        }
    };
    let mut body = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut body) {
        eprintln!("inference-wasi: cannot read stdin: {e}");
        return ExitCode::from(2);
    }
    // Bare rows: the KServe V1 instances form, which every api_ml answer understands.
    if args.protocol == Protocol::ApiMl && body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        let mut wrapped = b"{\"instances\":".to_vec();
        wrapped.extend_from_slice(&body);
        wrapped.push(b'}');
        body = wrapped;
    }
    let limits = Limits { max_rows: args.max_rows, ..Limits::default() };
    let reply =
        request::handle(&model, args.protocol, &body, Transport::content_type(Some(&args.content_type)), &limits);
    let mut out = std::io::stdout().lock();
    // In pieces: some WASI hosts fail one very large write (seen at ~128 MiB under wasmtime).
    let written = reply.body.chunks(1 << 20).try_for_each(|c| out.write_all(c));
    if let Err(e) = written.and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush()) {
        eprintln!("inference-wasi: cannot write the answer ({} bytes) to stdout: {e}", reply.body.len());
        return ExitCode::from(2);
    }
    if reply.status == 200 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
