//! The upload state machine's decisions and the byte ranges of the blob API, pure.
//!
//! An upload session is `Open { offset }` from `POST` until its `PUT` (→ the blob exists,
//! the session is gone) or `DELETE` (→ gone). A `PATCH` chunk is accepted only at the
//! session's current offset: its `Content-Range` (when sent) must start there, and its length
//! must match the `Content-Length` (when sent); anything else is `416` and leaves the session
//! as it was. The offset is always the number of bytes durably in the session's file.

/// Why a chunk was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("Content-Range '{0}' is not '<start>-<end>'")]
    Malformed(String),
    #[error(
        "the chunk starts at byte {start} but the upload holds {offset} bytes: send it from {offset}"
    )]
    OutOfOrder { start: u64, offset: u64 },
    #[error("Content-Range {start}-{end} covers {range_len} bytes but Content-Length is {length}")]
    LengthMismatch { start: u64, end: u64, range_len: u64, length: u64 },
}

/// Parses a chunk's `Content-Range: <start>-<end>` (inclusive; `bytes ` prefix and `/total`
/// suffix tolerated).
pub fn parse_content_range(s: &str) -> Result<(u64, u64), ChunkError> {
    let bad = || ChunkError::Malformed(s.to_string());
    let t = s.trim();
    let t = t.strip_prefix("bytes").map(str::trim_start).unwrap_or(t);
    let t = t.trim_start_matches('=').split('/').next().unwrap_or("");
    let (a, b) = t.split_once('-').ok_or_else(bad)?;
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end: u64 = b.trim().parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok((start, end))
}

/// Whether a chunk may be appended to a session holding `offset` bytes.
pub fn check_chunk(
    offset: u64,
    content_range: Option<&str>,
    content_length: Option<u64>,
) -> Result<(), ChunkError> {
    let Some(range) = content_range else { return Ok(()) };
    let (start, end) = parse_content_range(range)?;
    if start != offset {
        return Err(ChunkError::OutOfOrder { start, offset });
    }
    let range_len = end - start + 1;
    if let Some(length) = content_length
        && length != range_len
    {
        return Err(ChunkError::LengthMismatch { start, end, range_len, length });
    }
    Ok(())
}

/// The `Range` header of an upload session holding `offset` bytes: `0-<offset-1>` (`0-0`
/// while empty, as the reference registry answers).
pub fn session_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

/// A `Range: bytes=...` request on a blob of `size` bytes: `Ok(None)` for the whole blob
/// (no header, or a form this registry does not serve partially such as several ranges),
/// `Ok(Some((start, end)))` inclusive, `Err(())` when unsatisfiable (416).
#[allow(clippy::result_unit_err)]
pub fn blob_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(h) = header else { return Ok(None) };
    let Some(spec) = h.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else { return Ok(None) };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.is_empty(), b.is_empty()) {
        // The last `b` bytes.
        (true, false) => {
            let n: u64 = b.parse().map_err(|_| ())?;
            if n == 0 || size == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size - 1)
        }
        (false, _) => {
            let start: u64 = a.parse().map_err(|_| ())?;
            let end: u64 = if b.is_empty() { u64::MAX } else { b.parse().map_err(|_| ())? };
            if start >= size || end < start {
                return Err(());
            }
            (start, end.min(size - 1))
        }
        (true, true) => return Err(()),
    };
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (offset, Content-Range, Content-Length, expected: Ok or a part of the error).
    type ChunkCase<'a> = (u64, Option<&'a str>, Option<u64>, Result<(), &'a str>);
    /// (Range header, blob size, expected range).
    type RangeCase<'a> = (Option<&'a str>, u64, Result<Option<(u64, u64)>, ()>);

    #[test]
    fn chunks_are_accepted_only_in_order() {
        let table: &[ChunkCase] = &[
            (0, None, None, Ok(())),
            (0, Some("0-9"), Some(10), Ok(())),
            (10, Some("10-19"), None, Ok(())),
            (10, Some("bytes 10-19/*"), Some(10), Ok(())),
            (10, Some("0-9"), Some(10), Err("starts at byte 0")),
            (0, Some("5-9"), None, Err("holds 0 bytes")),
            (0, Some("0-9"), Some(9), Err("Content-Length is 9")),
            (0, Some("9-0"), None, Err("is not")),
            (0, Some("abc"), None, Err("is not")),
        ];
        for (offset, range, len, want) in table {
            let got = check_chunk(*offset, *range, *len).map_err(|e| e.to_string());
            match (got, want) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(w)) => assert!(e.contains(w), "{range:?}: {e}"),
                (g, w) => panic!("{offset} {range:?} {len:?}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn session_ranges_name_the_last_byte() {
        assert_eq!(session_range(0), "0-0");
        assert_eq!(session_range(1), "0-0");
        assert_eq!(session_range(100), "0-99");
    }

    #[test]
    fn blob_ranges() {
        let table: &[RangeCase] = &[
            (None, 10, Ok(None)),
            (Some("bytes=0-4"), 10, Ok(Some((0, 4)))),
            (Some("bytes=5-"), 10, Ok(Some((5, 9)))),
            (Some("bytes=5-100"), 10, Ok(Some((5, 9)))),
            (Some("bytes=-3"), 10, Ok(Some((7, 9)))),
            (Some("bytes=-30"), 10, Ok(Some((0, 9)))),
            (Some("bytes=10-"), 10, Err(())),
            (Some("bytes=4-2"), 10, Err(())),
            (Some("bytes=-0"), 10, Err(())),
            (Some("bytes=0-1,3-4"), 10, Ok(None)),
            (Some("items=0-1"), 10, Ok(None)),
        ];
        for (h, size, want) in table {
            assert_eq!(blob_range(*h, *size), *want, "{h:?}");
        }
    }
}
