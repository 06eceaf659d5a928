//! Conversions between column values and veil types.

use sqlx::{Row, sqlite::SqliteRow};
use veil_crypto::{VerifyKey, time::UnixTime};

use crate::{Error, Result};

/// A fixed-size blob column.
pub(crate) fn blob<const N: usize>(row: &SqliteRow, column: &'static str) -> Result<[u8; N]> {
    let v: Vec<u8> = row.try_get(column)?;
    v.as_slice().try_into().map_err(|_| Error::Invalid { what: column, reason: "wrong length" })
}

/// A fixed-size blob column that may be NULL.
pub(crate) fn optional_blob<const N: usize>(row: &SqliteRow, column: &'static str) -> Result<Option<[u8; N]>> {
    let v: Option<Vec<u8>> = row.try_get(column)?;
    v.map(|v| v.as_slice().try_into().map_err(|_| Error::Invalid { what: column, reason: "wrong length" })).transpose()
}

/// A timestamp column that may be NULL.
pub(crate) fn optional_time(row: &SqliteRow, column: &'static str) -> Result<Option<UnixTime>> {
    let v: Option<i64> = row.try_get(column)?;
    v.map(|v| u64::try_from(v).map(UnixTime).map_err(|_| Error::Invalid { what: column, reason: "negative" }))
        .transpose()
}

/// An Ed25519 public key column.
pub(crate) fn verify_key(row: &SqliteRow, column: &'static str) -> Result<VerifyKey> {
    Ok(VerifyKey::from_bytes(&blob::<32>(row, column)?)?)
}

/// A u64 stored in a signed 64-bit column.
pub(crate) fn to_i64(value: u64, what: &'static str) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::OutOfRange(what))
}

/// A signed 64-bit column holding a u64.
pub(crate) fn u64_col(row: &SqliteRow, column: &'static str) -> Result<u64> {
    let v: i64 = row.try_get(column)?;
    u64::try_from(v).map_err(|_| Error::Invalid { what: column, reason: "negative" })
}

/// Reads a timestamp column: Unix seconds in a signed 64-bit integer; a negative one is invalid.
pub(crate) fn time(row: &SqliteRow, column: &'static str) -> Result<UnixTime> {
    Ok(UnixTime(u64_col(row, column)?))
}

/// A time as a column value (Unix seconds); times past `i64::MAX` are out of range.
pub(crate) fn time_value(t: UnixTime) -> Result<i64> {
    to_i64(t.0, "timestamp")
}
