//! The least a bundle loader that checks `weights_sha256` must do: take the bytes from JS and
//! hash the tensor data behind the safetensors header.

use sha2::{Digest, Sha256};
use wasm_bindgen::prelude::*;

/// What a load produced (kept so the work cannot be optimised away).
#[wasm_bindgen]
pub struct Floor {
    header_len: usize,
    digest: [u8; 32],
}

#[wasm_bindgen]
impl Floor {
    /// Read the header length and hash everything after the header.
    #[wasm_bindgen(js_name = fromBundle)]
    pub fn from_bundle(bytes: &[u8]) -> Result<Floor, JsError> {
        let len = bytes.get(..8).ok_or_else(|| JsError::new("too short"))?;
        let header_len = u64::from_le_bytes(len.try_into().map_err(|_| JsError::new("too short"))?) as usize;
        let data = bytes.get(8 + header_len..).ok_or_else(|| JsError::new("bad header length"))?;
        let digest = if cfg!(feature = "no-hash") { [data.len() as u8; 32] } else { Sha256::digest(data).into() };
        Ok(Floor { header_len, digest })
    }

    /// Something derived from the result.
    #[wasm_bindgen(getter)]
    pub fn check(&self) -> usize {
        self.header_len + usize::from(self.digest[0])
    }
}
