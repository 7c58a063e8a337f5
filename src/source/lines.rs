//! Reading lines with a length limit, from any async buffered reader.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// What one call read.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line ending in `\n`; `consumed` counts every byte read.
    Complete { consumed: usize },
    /// End of input after `consumed` bytes with no `\n` (0: nothing left).
    Eof { consumed: usize },
    /// The line exceeded the limit; it was consumed up to and including its
    /// `\n` (or to the end of input) and `buf` holds only its start.
    TooLong { consumed: usize, complete: bool },
}

/// Reads one line into `buf` (cleared first, without the `\n`), keeping at
/// most `max` bytes of it.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut consumed = 0;
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if too_long {
                Line::TooLong {
                    consumed,
                    complete: false,
                }
            } else {
                Line::Eof { consumed }
            });
        }
        let (chunk, found) = match memchr(available) {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if !too_long {
            if buf.len() + chunk.len() > max {
                too_long = true;
                let room = max - buf.len();
                buf.extend_from_slice(&chunk[..room]);
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let used = found.unwrap_or(available.len());
        reader.consume(used);
        consumed += used;
        if found.is_some() {
            if buf.last() == Some(&b'\r') && !too_long {
                buf.pop();
            }
            return Ok(if too_long {
                Line::TooLong {
                    consumed,
                    complete: true,
                }
            } else {
                Line::Complete { consumed }
            });
        }
    }
}

fn memchr(haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == b'\n')
}

/// `maxLineBytes`'s default for the line-reading sources.
pub(super) fn default_max_line() -> crate::config::common::ByteSize {
    crate::config::common::ByteSize(16 * 1024 * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_limits_and_eof() {
        let input: &[u8] = b"one\r\ntoolongline\nlast";
        let mut r = tokio::io::BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut r, &mut buf, 8).await.unwrap(),
            Line::Complete { consumed: 5 }
        );
        assert_eq!(buf, b"one");
        assert_eq!(
            read_line(&mut r, &mut buf, 8).await.unwrap(),
            Line::TooLong {
                consumed: 12,
                complete: true
            }
        );
        assert_eq!(buf, b"toolongl");
        assert_eq!(
            read_line(&mut r, &mut buf, 8).await.unwrap(),
            Line::Eof { consumed: 4 }
        );
        assert_eq!(buf, b"last");
        assert_eq!(
            read_line(&mut r, &mut buf, 8).await.unwrap(),
            Line::Eof { consumed: 0 }
        );
    }
}
