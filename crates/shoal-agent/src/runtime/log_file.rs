//! Container logs in the CRI log format, the one kubelet reads from /var/log/pods:
//! `<RFC 3339 time> <stdout|stderr> <F|P> <content>`, one line per line of output (`P` marks a
//! piece of a line longer than [`LINE_BYTES_MAX`], `F` its end), rotated by size.

use std::fs::File;
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A line of output longer than this is split into partial lines.
pub const LINE_BYTES_MAX: usize = 16 * 1024;

/// How much of a container's output is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogLimits {
    /// A log file larger than this is rotated.
    pub file_bytes_max: u64,
    /// Files kept per container run, the current one included.
    pub files_max: u32,
}

impl Default for LogLimits {
    /// Kubernetes' defaults: containerLogMaxSize 10Mi, containerLogMaxFiles 5.
    fn default() -> Self {
        Self { file_bytes_max: 10 << 20, files_max: 5 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Appends log lines to a file, rotating it to `<path>.1`, `<path>.2`, … by size.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    bytes: u64,
    limits: LogLimits,
}

impl LogWriter {
    pub fn open(path: &Path, limits: LogLimits) -> io::Result<Self> {
        assert!(limits.files_max >= 1, "at least the current log file is kept");
        let file = File::options().create(true).append(true).open(path)?;
        let bytes = file.metadata()?.len();
        Ok(Self { path: path.to_owned(), file, bytes, limits })
    }

    /// Writes one line of output, or a piece of one when `partial`.
    pub fn write(
        &mut self,
        stream: Stream,
        time: SystemTime,
        partial: bool,
        content: &[u8],
    ) -> io::Result<()> {
        let time = jiff::Timestamp::try_from(time).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let tag = if partial { "P" } else { "F" };
        let mut line = format!("{time} {} {tag} ", stream.as_str()).into_bytes();
        line.extend_from_slice(content);
        line.push(b'\n');
        if self.bytes > 0 && self.bytes + line.len() as u64 > self.limits.file_bytes_max {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.bytes += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let files_max = self.limits.files_max;
        if files_max == 1 {
            self.file.set_len(0)?;
        } else {
            let _ = std::fs::remove_file(rotated_path(&self.path, files_max - 1));
            for index in (1..files_max - 1).rev() {
                let from = rotated_path(&self.path, index);
                if from.exists() {
                    std::fs::rename(&from, rotated_path(&self.path, index + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated_path(&self.path, 1))?;
            self.file = File::options().create(true).append(true).open(&self.path)?;
        }
        self.bytes = 0;
        Ok(())
    }
}

fn rotated_path(path: &Path, index: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

/// The files of one container run, oldest first.
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        (1..).map(|index| rotated_path(path, index)).take_while(|rotated| rotated.exists()).collect();
    files.reverse();
    if path.exists() {
        files.push(path.to_owned());
    }
    files
}

/// One parsed log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: jiff::Timestamp,
    pub stream: Stream,
    pub partial: bool,
    pub content: Vec<u8>,
}

impl LogLine {
    /// Parses a line as written by [`LogWriter`], without its newline.
    pub fn parse(line: &[u8]) -> Option<Self> {
        let mut fields = line.splitn(4, |byte| *byte == b' ');
        let time = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
        let stream = match fields.next()? {
            b"stdout" => Stream::Stdout,
            b"stderr" => Stream::Stderr,
            _ => return None,
        };
        let partial = match fields.next()? {
            b"P" => true,
            b"F" => false,
            _ => return None,
        };
        let content = fields.next().unwrap_or_default().to_vec();
        Some(Self { time, stream, partial, content })
    }

    /// The line as `kubectl logs` prints it.
    pub fn render(&self, timestamps: bool, out: &mut Vec<u8>) {
        if timestamps {
            out.extend_from_slice(format!("{} ", self.time).as_bytes());
        }
        out.extend_from_slice(&self.content);
        if !self.partial {
            out.push(b'\n');
        }
    }
}

/// Which lines of a log a reader wants (Kubernetes' PodLogOptions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Only the last this many lines.
    pub tail_lines: Option<u64>,
    /// Only lines written at or after this time.
    pub since: Option<jiff::Timestamp>,
}

/// The lines of a container run's log files that pass `filter`, oldest first. Lines that do not
/// parse (a torn write at a crash) are skipped.
pub fn read_lines(path: &Path, filter: LogFilter) -> io::Result<Vec<LogLine>> {
    let mut lines = Vec::new();
    for file in log_files(path) {
        let reader = match File::open(&file) {
            Ok(file) => BufReader::new(file),
            // Rotated away between listing and opening.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        for line in reader.split(b'\n') {
            let Some(line) = LogLine::parse(&line?) else { continue };
            if filter.since.is_some_and(|since| line.time < since) {
                continue;
            }
            lines.push(line);
        }
    }
    if let Some(tail) = filter.tail_lines {
        let tail = usize::try_from(tail).unwrap_or(usize::MAX);
        let start = lines.len().saturating_sub(tail);
        lines.drain(..start);
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    // Lines round-trip through the CRI format, with timestamps, streams and partial pieces
    // rendered as kubectl logs prints them.
    #[test]
    fn write_parse_render() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut writer = LogWriter::open(&path, LogLimits::default()).unwrap();
        writer.write(Stream::Stdout, at(0), false, b"hello world").unwrap();
        writer.write(Stream::Stderr, at(1), true, b"part ").unwrap();
        writer.write(Stream::Stderr, at(1), false, b"two").unwrap();
        let lines = read_lines(&path, LogFilter::default()).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].stream, Stream::Stdout);
        assert_eq!(lines[1].stream, Stream::Stderr);
        let mut out = Vec::new();
        lines.iter().for_each(|line| line.render(false, &mut out));
        assert_eq!(out, b"hello world\npart two\n");
        let mut stamped = Vec::new();
        lines[0].render(true, &mut stamped);
        assert_eq!(stamped, b"2023-11-14T22:13:20Z hello world\n");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().lines().next(),
            Some("2023-11-14T22:13:20Z stdout F hello world")
        );
    }

    // A full file rotates to .1, .2, …; at most `files_max` files stay, and reading walks them
    // oldest first; tail and since select from the end and by time.
    #[test]
    fn rotation_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let limits = LogLimits { file_bytes_max: 100, files_max: 3 };
        let mut writer = LogWriter::open(&path, limits).unwrap();
        for index in 0..20u64 {
            writer.write(Stream::Stdout, at(index), false, format!("line {index:02}").as_bytes()).unwrap();
        }
        assert_eq!(log_files(&path).len(), 3);
        assert!(!rotated_path(&path, 3).exists());
        let lines = read_lines(&path, LogFilter::default()).unwrap();
        let texts: Vec<String> =
            lines.iter().map(|line| String::from_utf8(line.content.clone()).unwrap()).collect();
        assert_eq!(texts.last().map(String::as_str), Some("line 19"));
        assert!(texts.windows(2).all(|pair| pair[0] < pair[1]), "oldest first: {texts:?}");
        assert!(texts.len() < 20, "old lines were rotated away");
        let tail = read_lines(&path, LogFilter { tail_lines: Some(2), since: None }).unwrap();
        assert_eq!(
            tail.iter().map(|line| line.content.clone()).collect::<Vec<_>>(),
            [b"line 18".to_vec(), b"line 19".to_vec()]
        );
        let since = jiff::Timestamp::try_from(at(19)).unwrap();
        let recent = read_lines(&path, LogFilter { tail_lines: None, since: Some(since) }).unwrap();
        assert_eq!(recent.len(), 1);
    }

    // Garbage and torn lines are skipped rather than failing the read.
    #[test]
    fn torn_lines_are_skipped() {
        assert_eq!(LogLine::parse(b"not a log line"), None);
        assert_eq!(LogLine::parse(b"2023-11-14T22:13:20Z stdin F x"), None);
        assert_eq!(LogLine::parse(b"2023-11-14T22:13:20Z stdout X x"), None);
        let empty = LogLine::parse(b"2023-11-14T22:13:20Z stdout F").unwrap();
        assert!(empty.content.is_empty());
    }
}
