//! The crate's error type.

/// Everything that can go wrong decoding or encoding veil's wire formats.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is larger than the format allows (checked before decoding).
    #[error("{what} is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size in bytes.
        len: usize,
        /// The most bytes allowed.
        max: usize,
    },
    /// A list has more items than the format allows.
    #[error("{what} has {count} items, more than the {max} allowed")]
    TooMany {
        /// What list was too long.
        what: &'static str,
        /// How many items it had.
        count: usize,
        /// The most allowed.
        max: usize,
    },
    /// The bytes are not a valid protobuf message of the expected type.
    #[error("{what} is not valid protobuf: {reason}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// prost's description.
        reason: String,
    },
    /// A field is missing, has the wrong length or an invalid value.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which field or message was refused, as a short name for people.
        what: &'static str,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The format version is not one this build understands.
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion {
        /// Which message declared the version (a contact link, a contact request, …).
        what: &'static str,
        /// The version the input declared; this build reads only the version it writes.
        version: u32,
    },
    /// A link is not a `veil://` link (or its QR form) of a known kind.
    #[error("not a veil link: expected veil://contact/…, veil://group/… or their QR form")]
    NotALink,
    /// A link's text is not valid base64url / base45.
    #[error("the link is damaged: {0}")]
    BadText(&'static str),
    /// A link's checksum does not match (typically a typo or a truncated copy).
    #[error("the link is damaged: checksum mismatch (incomplete or mistyped copy?)")]
    Checksum,
    /// A value failed veil-crypto's validation.
    #[error(transparent)]
    Crypto(#[from] veil_crypto::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

pub(crate) fn decode_err(what: &'static str) -> impl Fn(prost::DecodeError) -> Error {
    move |e| Error::Decode { what, reason: e.to_string() }
}

impl veil_crypto::HasKind for Error {
    fn kind(&self) -> veil_crypto::ErrorKind {
        match self {
            Error::Crypto(e) => e.kind(),
            Error::TooLarge { .. }
            | Error::TooMany { .. }
            | Error::Decode { .. }
            | Error::Invalid { .. }
            | Error::UnsupportedVersion { .. }
            | Error::NotALink
            | Error::BadText(_)
            | Error::Checksum => veil_crypto::ErrorKind::InvalidInput,
        }
    }
}
