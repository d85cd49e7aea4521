//! TREC run files: one line per retrieved document, `qid Q0 docid rank score tag`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::ranking::ScorePrecision;
use crate::run::Run;

#[derive(Debug, thiserror::Error)]
pub enum RunFileError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}:{line}: {message}", path.display())]
    Parse { path: PathBuf, line: usize, message: String },
}

impl Run {
    /// Reads a TREC run file. Blank lines are skipped; the `Q0`, rank and tag columns are
    /// ignored, as trec_eval ignores them.
    pub fn read_trec(path: impl AsRef<Path>) -> Result<Run, RunFileError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| io_error(path, source))?;
        Run::read_trec_from(BufReader::new(file), path)
    }

    /// Reads TREC run lines from `reader`; `source` names it in errors (e.g. a `.gz` path).
    pub fn read_trec_from(reader: impl BufRead, source: &Path) -> Result<Run, RunFileError> {
        let mut run = Run::new();
        for (index, line) in reader.lines().enumerate() {
            let line_number = index + 1;
            let line = line.map_err(|e| io_error(source, e))?;
            let parse_error = |message: String| RunFileError::Parse { path: source.to_path_buf(), line: line_number, message };
            if line.trim().is_empty() {
                continue;
            }
            let (query_id, doc_id, score) = parse_line(&line).map_err(parse_error)?;
            if run.insert(query_id, doc_id, score).is_some() {
                return Err(parse_error(format!("document `{doc_id}` is listed twice for query `{query_id}`")));
            }
        }
        Ok(run)
    }

    /// Writes the run as a TREC run file, each query's documents by descending score
    /// (ties by descending document id, the order trec_eval reads them in).
    pub fn write_trec(&self, path: impl AsRef<Path>, tag: &str) -> Result<(), RunFileError> {
        let path = path.as_ref();
        let write = || -> io::Result<()> {
            let mut writer = BufWriter::new(File::create(path)?);
            self.write_trec_to(&mut writer, tag)?;
            writer.flush()
        };
        write().map_err(|source| io_error(path, source))
    }

    /// Writes TREC run lines to `writer`. Scores use Rust's shortest round-trip formatting,
    /// so reading the file back gives the same `f64`s.
    pub fn write_trec_to(&self, mut writer: impl Write, tag: &str) -> io::Result<()> {
        if tag.is_empty() || tag.contains(char::is_whitespace) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("run tag `{tag}` must be one non-empty word")));
        }
        for query_id in self.query_ids() {
            for (rank, doc) in self.ranking(query_id, ScorePrecision::F64).iter().enumerate() {
                writeln!(writer, "{query_id} Q0 {} {} {} {tag}", doc.doc_id, rank + 1, doc.score)?;
            }
        }
        Ok(())
    }
}

fn parse_line(line: &str) -> Result<(&str, &str, f64), String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [query_id, _q0, doc_id, _rank, score, _tag] = fields[..] else {
        return Err(format!("expected 6 fields `qid Q0 docid rank score tag`, found {}", fields.len()));
    };
    let value: f64 = score.parse().map_err(|_| format!("score `{score}` is not a number"))?;
    if !value.is_finite() {
        return Err(format!("score `{score}` is not a finite number"));
    }
    Ok((query_id, doc_id, value))
}

fn io_error(path: &Path, source: io::Error) -> RunFileError {
    RunFileError::Io { path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Run, RunFileError> {
        Run::read_trec_from(text.as_bytes(), Path::new("run.txt"))
    }

    #[test]
    fn reads_scores_and_ignores_rank_and_tag() {
        let run = read("q1 Q0 d1 1 2.5 tag\r\nq1 Q0 d2 7 3.25 other\n\nq2 Q0 d1 1 -1e-3 tag\n").unwrap();
        assert_eq!(run.num_queries(), 2);
        assert_eq!(run.scores("q1").unwrap()["d2"], 3.25);
        assert_eq!(run.scores("q2").unwrap()["d1"], -0.001);
    }

    #[test]
    fn parse_errors_name_file_and_line() {
        let err = read("q1 Q0 d1 1 2.5 tag\nq1 Q0 d2 2 high tag\n").unwrap_err();
        assert_eq!(err.to_string(), "run.txt:2: score `high` is not a number");
        let err = read("q1 Q0 d1 1 2.5\n").unwrap_err();
        assert_eq!(err.to_string(), "run.txt:1: expected 6 fields `qid Q0 docid rank score tag`, found 5");
        let err = read("q1 Q0 d1 1 nan t\n").unwrap_err();
        assert_eq!(err.to_string(), "run.txt:1: score `nan` is not a finite number");
    }

    #[test]
    fn duplicate_documents_are_rejected() {
        let err = read("q Q0 d 1 2 t\nq Q0 e 2 1 t\nq Q0 d 3 0 t\n").unwrap_err();
        assert_eq!(err.to_string(), "run.txt:3: document `d` is listed twice for query `q`");
    }

    #[test]
    fn write_sorts_by_score_and_round_trips() {
        let mut run = Run::new();
        for (q, d, s) in [("q2", "x", 0.1), ("q1", "a", 0.5), ("q1", "b", 1.0 / 3.0), ("q1", "c", 0.5)] {
            run.insert(q, d, s);
        }
        let mut out = Vec::new();
        run.write_trec_to(&mut out, "sys").unwrap();
        let text = String::from_utf8(out).unwrap();
        let expected = "q1 Q0 c 1 0.5 sys\nq1 Q0 a 2 0.5 sys\nq1 Q0 b 3 0.3333333333333333 sys\n\
                        q2 Q0 x 1 0.1 sys\n";
        assert_eq!(text, expected);
        assert_eq!(read(&text).unwrap(), run);
    }

    #[test]
    fn write_and_read_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.trec");
        let mut run = Run::new();
        run.insert("q", "d", 1.5);
        run.write_trec(&path, "t").unwrap();
        assert_eq!(Run::read_trec(&path).unwrap(), run);
        let missing = Run::read_trec(dir.path().join("none")).unwrap_err();
        assert!(missing.to_string().contains("none"), "{missing}");
    }

    #[test]
    fn tag_must_be_one_word() {
        let err = Run::new().write_trec_to(Vec::new(), "two words").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
