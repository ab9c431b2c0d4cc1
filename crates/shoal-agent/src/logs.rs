//! Serving a container's log as `kubectl logs` asks for it: `tailLines`, `sinceSeconds` /
//! `sinceTime`, `timestamps`, `limitBytes`, and `follow`, which streams new lines (across
//! rotations) until the container exits or the reader goes away.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Seek as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::runtime::log_file::{LogFilter, LogLine, log_files};

/// How often a followed log is checked for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// Chunks of a streamed log in flight to a slow reader; the reader's pace is the stream's.
const STREAM_CHUNKS_MAX: usize = 16;
/// A chunk of a streamed log is sent once it holds this many bytes.
const CHUNK_BYTES: usize = 32 * 1024;

/// What a reader asked for (Kubernetes' PodLogOptions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogRequest {
    pub filter: LogFilter,
    pub timestamps: bool,
    pub limit_bytes: Option<u64>,
    pub follow: bool,
    pub previous: bool,
}

impl LogRequest {
    /// Reads PodLogOptions from a query string, with Kubernetes' errors for bad values.
    pub fn from_query(query: &str) -> Result<Self, String> {
        let mut request = LogRequest::default();
        for (key, value) in form_pairs(query) {
            let flag = || matches!(value.as_str(), "true" | "1" | "");
            let number = |name: &str| {
                value
                    .parse::<i64>()
                    .map_err(|_| format!("{name}: invalid value {value:?}: must be an integer"))
            };
            match key.as_str() {
                "follow" => request.follow = flag(),
                "previous" => request.previous = flag(),
                "timestamps" => request.timestamps = flag(),
                "tailLines" => {
                    let lines = number("tailLines")?;
                    if lines < 0 {
                        return Err("tailLines: Invalid value: must be greater than or equal to 0".into());
                    }
                    request.filter.tail_lines = Some(lines as u64);
                }
                "limitBytes" => {
                    let bytes = number("limitBytes")?;
                    if bytes < 1 {
                        return Err("limitBytes: Invalid value: must be greater than 0".into());
                    }
                    request.limit_bytes = Some(bytes as u64);
                }
                "sinceSeconds" => {
                    let seconds = number("sinceSeconds")?;
                    if seconds < 1 {
                        return Err("sinceSeconds: Invalid value: must be greater than 0".into());
                    }
                    let since = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(seconds);
                    request.filter.since = Some(since);
                }
                "sinceTime" => {
                    let since = value.parse().map_err(|_| format!("sinceTime: invalid value {value:?}"))?;
                    request.filter.since = Some(since);
                }
                _ => {}
            }
        }
        Ok(request)
    }
}

fn form_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

/// A log read from its start: the rotated files, then the current file through an open
/// handle that following continues from.
struct Reader {
    path: PathBuf,
    current: Option<BufReader<File>>,
    inode: u64,
    partial: Vec<u8>,
}

impl Reader {
    /// Opens the log and reads every line already written.
    fn open(path: &Path) -> (Self, Vec<LogLine>) {
        let current = File::open(path).ok();
        let inode = current.as_ref().and_then(|file| file.metadata().ok()).map_or(0, |meta| meta.ino());
        let mut lines = Vec::new();
        for rotated in log_files(path).into_iter().filter(|file| file != path) {
            if let Ok(file) = File::open(&rotated) {
                for line in BufReader::new(file).split(b'\n').map_while(Result::ok) {
                    lines.extend(LogLine::parse(&line));
                }
            }
        }
        let mut reader =
            Self { path: path.to_owned(), current: current.map(BufReader::new), inode, partial: Vec::new() };
        lines.extend(reader.read_new());
        (reader, lines)
    }

    /// Lines written since the last read, following a rotation to the new file.
    fn read_new(&mut self) -> Vec<LogLine> {
        let mut lines = Vec::new();
        loop {
            if let Some(current) = self.current.as_mut() {
                let mut chunk = Vec::new();
                let _ = current.read_to_end(&mut chunk);
                self.partial.extend_from_slice(&chunk);
                while let Some(newline) = self.partial.iter().position(|byte| *byte == b'\n') {
                    let line: Vec<u8> = self.partial.drain(..=newline).collect();
                    lines.extend(LogLine::parse(&line[..line.len() - 1]));
                }
            }
            // Rotated: the file at `path` is a new one. Files rotated in between (created
            // and rotated away since the last look) are read whole, oldest first.
            let on_disk = std::fs::metadata(&self.path).ok().map(|meta| meta.ino());
            match on_disk {
                Some(inode) if inode != self.inode => {
                    let files = log_files(&self.path);
                    let inode_of = |file: &PathBuf| std::fs::metadata(file).ok().map(|meta| meta.ino());
                    let ours = files.iter().position(|file| inode_of(file) == Some(self.inode));
                    let newer = ours.map_or(0, |index| index + 1);
                    for file in files.iter().skip(newer).filter(|file| **file != self.path) {
                        if let Ok(opened) = File::open(file) {
                            for line in BufReader::new(opened).split(b'\n').map_while(Result::ok) {
                                lines.extend(LogLine::parse(&line));
                            }
                        }
                    }
                    self.current = File::open(&self.path).ok().map(BufReader::new);
                    self.inode = inode;
                    self.partial.clear();
                    if let Some(current) = self.current.as_mut() {
                        let _ = current.rewind();
                    }
                }
                _ => return lines,
            }
        }
    }
}

/// The log as the request asks, in chunks; a followed log ends once `exited` resolves and
/// the log is drained, or when the receiver is dropped.
pub fn stream(
    path: PathBuf,
    request: LogRequest,
    exited: impl std::future::Future<Output = ()> + Send + 'static,
) -> mpsc::Receiver<Bytes> {
    let (sender, receiver) = mpsc::channel(STREAM_CHUNKS_MAX);
    tokio::spawn(async move {
        let mut budget = request.limit_bytes.unwrap_or(u64::MAX);
        let (mut reader, mut lines) = Reader::open(&path);
        lines.retain(|line| request.filter.since.is_none_or(|since| line.time >= since));
        if let Some(tail) = request.filter.tail_lines {
            let start = lines.len().saturating_sub(usize::try_from(tail).unwrap_or(usize::MAX));
            lines.drain(..start);
        }
        if !send_lines(&sender, &lines, request.timestamps, &mut budget).await || !request.follow {
            return;
        }
        tokio::pin!(exited);
        let mut done = false;
        loop {
            tokio::select! {
                () = &mut exited, if !done => done = true,
                () = tokio::time::sleep(FOLLOW_POLL) => {}
                () = sender.closed() => return,
            }
            let lines = reader.read_new();
            if !send_lines(&sender, &lines, request.timestamps, &mut budget).await || done {
                return;
            }
        }
    });
    receiver
}

/// Sends lines within the byte budget; false once the budget is spent or the reader left.
async fn send_lines(
    sender: &mpsc::Sender<Bytes>,
    lines: &[LogLine],
    timestamps: bool,
    budget: &mut u64,
) -> bool {
    let mut chunk = Vec::new();
    for line in lines {
        line.render(timestamps, &mut chunk);
        if chunk.len() >= CHUNK_BYTES && !send_chunk(sender, &mut chunk, budget).await {
            return false;
        }
    }
    send_chunk(sender, &mut chunk, budget).await
}

async fn send_chunk(sender: &mpsc::Sender<Bytes>, chunk: &mut Vec<u8>, budget: &mut u64) -> bool {
    if chunk.is_empty() {
        return *budget > 0;
    }
    let allowed = usize::try_from(*budget).unwrap_or(usize::MAX).min(chunk.len());
    let bytes = Bytes::copy_from_slice(&chunk[..allowed]);
    *budget -= allowed as u64;
    chunk.clear();
    sender.send(bytes).await.is_ok() && *budget > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::log_file::{LogLimits, LogWriter, Stream};
    use std::time::SystemTime;

    async fn collect(mut receiver: mpsc::Receiver<Bytes>) -> String {
        let mut out = Vec::new();
        while let Some(chunk) = receiver.recv().await {
            out.extend_from_slice(&chunk);
        }
        String::from_utf8(out).unwrap()
    }

    // Query parameters parse with Kubernetes' names; bad values are errors, not defaults.
    #[test]
    fn queries() {
        let request =
            LogRequest::from_query("follow=true&tailLines=5&timestamps=true&limitBytes=100&container=x")
                .unwrap();
        assert!(request.follow && request.timestamps && !request.previous);
        assert_eq!((request.filter.tail_lines, request.limit_bytes), (Some(5), Some(100)));
        let since = LogRequest::from_query("sinceTime=2024-01-02T03%3A04%3A05Z").unwrap();
        assert_eq!(since.filter.since, Some("2024-01-02T03:04:05Z".parse().unwrap()));
        assert!(LogRequest::from_query("tailLines=-1").is_err());
        assert!(LogRequest::from_query("tailLines=x").is_err());
        assert!(LogRequest::from_query("limitBytes=0").is_err());
        assert!(LogRequest::from_query("sinceSeconds=0").is_err());
    }

    // tail and limitBytes cut the output; follow streams lines written later, across a
    // rotation, and ends once the container has exited and the log is drained.
    #[tokio::test]
    async fn tail_limit_follow() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut writer = LogWriter::open(&path, LogLimits { file_bytes_max: 200, files_max: 3 }).unwrap();
        for index in 0..3 {
            writer
                .write(Stream::Stdout, SystemTime::now(), false, format!("early {index}").as_bytes())
                .unwrap();
        }
        let tail =
            LogRequest { filter: LogFilter { tail_lines: Some(1), since: None }, ..LogRequest::default() };
        assert_eq!(collect(stream(path.clone(), tail, async {})).await, "early 2\n");
        let limited = LogRequest { limit_bytes: Some(4), ..LogRequest::default() };
        assert_eq!(collect(stream(path.clone(), limited, async {})).await, "earl");

        let (exit, exited) = tokio::sync::oneshot::channel::<()>();
        let follow = LogRequest { follow: true, ..LogRequest::default() };
        let receiver = stream(path.clone(), follow, async move {
            let _ = exited.await;
        });
        let collected = tokio::spawn(collect(receiver));
        tokio::time::sleep(Duration::from_millis(250)).await;
        // Enough to rotate the 200-byte file more than once.
        for index in 0..10 {
            writer
                .write(Stream::Stdout, SystemTime::now(), false, format!("late {index}").as_bytes())
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        exit.send(()).unwrap();
        let text =
            tokio::time::timeout(Duration::from_secs(10), collected).await.expect("the stream ends").unwrap();
        let expected: String =
            (0..3).map(|i| format!("early {i}\n")).chain((0..10).map(|i| format!("late {i}\n"))).collect();
        assert_eq!(text, expected);
    }
}
