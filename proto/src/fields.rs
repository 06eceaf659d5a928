//! Field checks shared by the decoders.

use veil_crypto::Name;

use crate::{Error, Result};

/// A fixed-size byte field.
pub(crate) fn fixed<const N: usize>(what: &'static str, bytes: &[u8]) -> Result<[u8; N]> {
    bytes.try_into().map_err(|_| Error::Invalid { what, reason: "wrong length" })
}

/// A version field that must equal `expected`.
pub(crate) fn version(what: &'static str, got: u32, expected: u32) -> Result<()> {
    if got == expected { Ok(()) } else { Err(Error::UnsupportedVersion { what, version: got }) }
}

/// An optional name: the empty string means none.
pub(crate) fn optional_name(text: &str) -> Result<Option<Name>> {
    if text.is_empty() { Ok(None) } else { Ok(Some(Name::new(text)?)) }
}

/// The wire text of an optional name.
pub(crate) fn name_text(name: Option<&Name>) -> String {
    name.map(|n| n.as_str().to_owned()).unwrap_or_default()
}
