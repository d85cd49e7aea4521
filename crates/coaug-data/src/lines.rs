//! Line-by-line reading that knows its file name and line number, for precise error reports.

use std::io::BufRead;
use std::path::PathBuf;

use crate::error::{DataError, Result};

/// Yields the non-blank lines of a text file, without their `\n` / `\r\n` terminator.
///
/// Lines are read as bytes and checked for UTF-8 one at a time, so a bad byte is reported with
/// its line instead of failing the whole read with a bare `stream did not contain valid UTF-8`.
pub(crate) struct LineReader<R> {
    reader: R,
    path: PathBuf,
    line_no: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> LineReader<R> {
    pub(crate) fn new(reader: R, path: impl Into<PathBuf>) -> Self {
        Self { reader, path: path.into(), line_no: 0, buf: Vec::new() }
    }

    /// The next non-blank line and its 1-based number, or `None` at end of file.
    pub(crate) fn next_line(&mut self) -> Result<Option<(usize, &str)>> {
        let range = loop {
            self.buf.clear();
            let read = self.reader.read_until(b'\n', &mut self.buf).map_err(|e| DataError::io(&self.path, e))?;
            if read == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            let mut range = 0..content_len(&self.buf);
            // Files saved by Windows editors often start with a byte-order mark.
            if self.line_no == 1 && self.buf.starts_with(BOM) {
                range.start = BOM.len().min(range.end);
            }
            // JSON and TSV both count only ASCII whitespace as blank.
            if !self.buf[range.clone()].iter().all(u8::is_ascii_whitespace) {
                break range;
            }
        };
        let line = std::str::from_utf8(&self.buf[range]).map_err(|e| DataError::InvalidUtf8 {
            path: self.path.clone(),
            line: self.line_no,
            column: e.valid_up_to() + 1,
        })?;
        Ok(Some((self.line_no, line)))
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Length of the line without its `\n` or `\r\n` terminator.
fn content_len(line: &[u8]) -> usize {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line).len()
}
