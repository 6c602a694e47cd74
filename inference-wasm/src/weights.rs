//! Reading the safetensors container by hand: the 8-byte header length, the JSON header and
//! each tensor's byte range, with the checks the `safetensors` crate makes on untrusted input
//! (header size, contiguous non-overlapping offsets that cover the buffer exactly, byte
//! lengths that match dtype × shape).
//!
//! Why not the crate's reader: it parses the header into a `HashMap` and re-sorts it on every
//! call, and ships its dtype tables and error strings to the browser. This reader is one pass
//! over borrowed bytes, which measurably shortens wasm cold start and size (see
//! `bench/wasm`). Writing still goes through the crate ([`crate::Bundle::to_safetensors`]),
//! and a test checks this reader against it.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::bundle::METADATA_KEY;
use crate::error::{truncate_echo, BundleError};
use crate::name_map::NameMap;

/// The same cap the `safetensors` crate applies, so a length prefix cannot claim gigabytes.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// More tensors than any bundle holds (64 hidden layers × 6 + 2); bounds the offset sort.
const MAX_TENSORS: usize = 4096;

/// One tensor as stored: dtype name, shape and its little-endian bytes.
#[derive(Debug)]
pub(crate) struct RawTensor<'a> {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub bytes: &'a [u8],
}

/// A parsed container: the bundle's metadata JSON (`__metadata__.bundle`) and the tensors by name.
#[derive(Debug)]
pub(crate) struct Container<'a> {
    pub bundle_json: Option<String>,
    pub tensors: NameMap<RawTensor<'a>>,
}

#[derive(Deserialize)]
struct TensorInfo {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (usize, usize),
}

/// The header object: `__metadata__` plus one entry per tensor, in file order.
struct Header {
    metadata: Option<Metadata>,
    tensors: Vec<(String, TensorInfo)>,
}

/// The `__metadata__` object's `bundle` entry, the one a reader needs. Every value must be a
/// string, as the format says; the other keys are read past in one pass, whatever their count.
struct Metadata(Option<String>);

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MetadataVisitor;
        impl<'de> Visitor<'de> for MetadataVisitor {
            type Value = Metadata;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metadata, A::Error> {
                let mut bundle = None;
                while let Some((key, value)) = map.next_entry::<String, String>()? {
                    if key == METADATA_KEY && bundle.replace(value).is_some() {
                        return Err(de::Error::custom(format_args!("`__metadata__` has `{METADATA_KEY}` twice")));
                    }
                }
                Ok(Metadata(bundle))
            }
        }
        deserializer.deserialize_map(MetadataVisitor)
    }
}

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeaderVisitor;
        impl<'de> Visitor<'de> for HeaderVisitor {
            type Value = Header;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a safetensors header object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
                let mut header = Header { metadata: None, tensors: Vec::new() };
                while let Some(key) = map.next_key::<String>()? {
                    if key == "__metadata__" {
                        if header.metadata.is_some() {
                            return Err(de::Error::duplicate_field("__metadata__"));
                        }
                        header.metadata = Some(map.next_value()?);
                    } else {
                        header.tensors.push((key, map.next_value()?));
                    }
                }
                Ok(header)
            }
        }
        deserializer.deserialize_map(HeaderVisitor)
    }
}

fn invalid(msg: impl Into<String>) -> BundleError {
    BundleError::Safetensors(msg.into())
}

/// Bytes per element, for the dtypes safetensors defines (sub-byte types are not accepted).
fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

/// Parse and validate a safetensors buffer. Tensor bytes are borrowed, not copied.
pub(crate) fn read(bytes: &[u8]) -> Result<Container<'_>, BundleError> {
    let (len_prefix, rest) = bytes.split_first_chunk::<8>().ok_or_else(|| invalid("header too small"))?;
    let header_len = u64::from_le_bytes(*len_prefix);
    if header_len > MAX_HEADER_BYTES {
        return Err(invalid("header too large"));
    }
    // header_len ≤ 10⁸, so it fits usize on every target.
    let header_len = header_len as usize;
    if header_len > rest.len() {
        return Err(invalid(format!("header length {header_len} exceeds the {} bytes that follow it", rest.len())));
    }
    let (header, data) = rest.split_at(header_len);
    let header = std::str::from_utf8(header).map_err(|_| invalid("header is not UTF-8"))?;
    if !header.starts_with('{') {
        return Err(invalid("header does not start with `{`"));
    }
    let Header { metadata, tensors: infos } =
        serde_json::from_str(header).map_err(|e| invalid(format!("invalid header JSON: {e}")))?;

    if infos.len() > MAX_TENSORS {
        return Err(invalid(format!("{} tensors (at most {MAX_TENSORS})", infos.len())));
    }
    // Offsets, in file order, must tile the data buffer exactly. Insertion sort: n is capped
    // above, and a generic sort would add ~6 KB of wasm.
    let mut by_offset: Vec<&(String, TensorInfo)> = Vec::with_capacity(infos.len());
    for entry in &infos {
        let at = by_offset.partition_point(|(_, other)| other.data_offsets <= entry.1.data_offsets);
        by_offset.insert(at, entry);
    }
    let mut end = 0;
    for (name, info) in by_offset {
        let (start, stop) = info.data_offsets;
        if start != end || stop < start {
            return Err(invalid(format!("tensor `{name}` has invalid data offsets [{start}, {stop}]")));
        }
        let expected = dtype_size(&info.dtype)
            .and_then(|size| info.shape.iter().try_fold(size, |n, &d| n.checked_mul(d)).filter(|&n| n == stop - start));
        if expected.is_none() {
            return Err(invalid(format!(
                "tensor `{name}` ({} {:?}) does not fit its {} bytes",
                info.dtype,
                info.shape,
                stop - start
            )));
        }
        end = stop;
    }
    if end != data.len() {
        return Err(invalid(format!("tensors cover {end} bytes of a {}-byte data buffer", data.len())));
    }

    let mut tensors = NameMap::default();
    for (name, info) in infos {
        let (start, stop) = info.data_offsets;
        let raw = RawTensor { dtype: info.dtype, shape: info.shape, bytes: &data[start..stop] };
        tensors
            .insert(name, raw)
            .map_err(|(name, _)| invalid(format!("tensor `{}` is named twice", truncate_echo(&name))))?;
    }
    Ok(Container { bundle_json: metadata.and_then(|m| m.0), tensors })
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::{Dtype, TensorView};
    use std::collections::HashMap;

    fn file(tensors: &[(&str, Vec<usize>, Vec<f32>)], metadata: Option<HashMap<String, String>>) -> Vec<u8> {
        let raw: Vec<Vec<u8>> =
            tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
        let views = tensors
            .iter()
            .zip(&raw)
            .map(|((name, shape, _), bytes)| (*name, TensorView::new(Dtype::F32, shape.clone(), bytes).unwrap()));
        safetensors::serialize(views, metadata).unwrap()
    }

    #[test]
    fn reads_what_the_safetensors_crate_writes() {
        let meta = HashMap::from([("bundle".to_owned(), "{\"a\": 1}".to_owned())]);
        let bytes =
            file(&[("b", vec![2, 3], (0..6).map(|i| i as f32).collect()), ("a", vec![1], vec![7.5])], Some(meta));
        let c = read(&bytes).unwrap();
        assert_eq!(c.bundle_json.as_deref(), Some("{\"a\": 1}"));
        assert_eq!(c.tensors.iter().map(|(name, _)| name).collect::<Vec<_>>(), ["a", "b"]);
        let reference = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for (name, t) in c.tensors.iter() {
            let r = reference.tensor(name).unwrap();
            assert_eq!((t.dtype.as_str(), t.shape.as_slice(), t.bytes), ("F32", r.shape(), r.data()));
        }
    }

    #[test]
    fn no_metadata_and_no_tensors_are_fine() {
        let bytes = file(&[], None);
        let c = read(&bytes).unwrap();
        assert!(c.bundle_json.is_none() && c.tensors.len() == 0);
    }

    /// A file with the given header text and data bytes.
    fn with_header(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn rejects_every_malformed_container() {
        let t = |json: &str| format!("{{{json}}}");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![1, 2, 3], "header too small"),
            (u64::MAX.to_le_bytes().to_vec(), "header too large"),
            (100u64.to_le_bytes().iter().chain(b"{}").copied().collect(), "exceeds"),
            (with_header("[]", &[]), "does not start"),
            (with_header("{\"a\":", &[]), "invalid header JSON"),
            (with_header(&t(r#""a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}"#), &[0; 4]), "does not fit"),
            (
                with_header(&t(r#""a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}"#), &[0; 8]),
                "invalid data offsets",
            ),
            (with_header(&t(r#""a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#), &[0; 8]), "cover 4 bytes"),
            (with_header(&t(r#""a":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}"#), &[0; 4]), "does not fit"),
            (
                with_header(&t(r#""a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}"#), &[0; 4]),
                "does not fit",
            ),
            (
                with_header(
                    &t(
                        r#""a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}"#,
                    ),
                    &[0; 8],
                ),
                "tensor `a` is named twice",
            ),
            (with_header(&t(r#""__metadata__":{"bundle":"1","k":"2","bundle":"3"}"#), &[]), "has `bundle` twice"),
            (with_header(&t(r#""__metadata__":{"k":1}"#), &[]), "invalid header JSON"),
            (with_header(&t(r#""__metadata__":{},"__metadata__":{}"#), &[]), "duplicate field"),
        ];
        for (bytes, needle) in cases {
            let err = read(&bytes).unwrap_err().to_string();
            assert!(err.contains(needle), "expected `{needle}` in: {err}");
        }
    }

    #[test]
    fn the_bundle_entry_is_found_among_many_metadata_keys() {
        // In descending order: a map kept sorted by insertion would move every entry each time.
        let mut keys: Vec<String> = (0..50_000).rev().map(|i| format!(r#""k{i:05}":"v""#)).collect();
        keys.insert(25_000, r#""bundle":"{}""#.into());
        let header = format!(r#"{{"__metadata__":{{{}}}}}"#, keys.join(","));
        assert_eq!(read(&with_header(&header, &[])).unwrap().bundle_json.as_deref(), Some("{}"));
    }

    #[test]
    fn tensor_count_is_capped() {
        let entries: Vec<String> = (0..=MAX_TENSORS)
            .map(|i| format!(r#""t{i}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#))
            .collect();
        let err = read(&with_header(&format!("{{{}}}", entries.join(",")), &[])).unwrap_err().to_string();
        assert!(err.contains("4097 tensors (at most 4096)"), "{err}");
    }
}
