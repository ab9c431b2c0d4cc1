//! Liveness, readiness and startup probes: running one (exec, httpGet, tcpSocket) and turning
//! a series of outcomes into a verdict with the probe's thresholds, Kubernetes' defaults
//! included (period 10 s, timeout 1 s, success threshold 1, failure threshold 3).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::mpsc;

use crate::runtime::{ContainerId, Runtime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    /// As Kubernetes' event messages name it: "Liveness probe failed: …".
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// One probe's outcome; a failure says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
}

/// A probe's timing and thresholds, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(probe: &Probe) -> Self {
        let seconds = |value: Option<i32>, default: u64| {
            Duration::from_secs(value.map_or(default, |v| v.max(0) as u64))
        };
        let count = |value: Option<i32>, default: u32| value.map_or(default, |v| v.max(1) as u32);
        Self {
            initial_delay: seconds(probe.initial_delay_seconds, 0),
            period: seconds(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: seconds(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// Turns outcomes into a verdict: it flips only after `threshold` outcomes in a row agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    timing: Timing,
    verdict: Option<bool>,
    successes: u32,
    failures: u32,
}

impl Tracker {
    pub fn new(timing: Timing) -> Self {
        Self { timing, verdict: None, successes: 0, failures: 0 }
    }

    /// Records an outcome; returns the new verdict if it changed (`true` = passing).
    pub fn record(&mut self, outcome: &Outcome) -> Option<bool> {
        let passing = matches!(outcome, Outcome::Success);
        if passing {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let flips = if passing {
            self.successes >= self.timing.success_threshold && self.verdict != Some(true)
        } else {
            self.failures >= self.timing.failure_threshold && self.verdict != Some(false)
        };
        flips.then(|| {
            self.verdict = Some(passing);
            passing
        })
    }
}

/// A verdict change of one probe of one container run, for the pod worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeVerdict {
    pub container: String,
    pub id: ContainerId,
    pub kind: ProbeKind,
    pub passing: bool,
    /// The last failure's message, for the event.
    pub message: String,
}

/// Probes a container run until the channel closes (the worker stopped caring) or, for a
/// startup probe, until it passes.
pub async fn run<R: Runtime>(
    kind: ProbeKind,
    probe: Probe,
    container: Container,
    id: ContainerId,
    pod_ip: IpAddr,
    runtime: Arc<R>,
    verdicts: mpsc::Sender<ProbeVerdict>,
) {
    let timing = Timing::of(&probe);
    let mut tracker = Tracker::new(timing);
    tokio::time::sleep(timing.initial_delay).await;
    let mut ticks = tokio::time::interval(timing.period);
    loop {
        ticks.tick().await;
        let outcome = probe_once(&probe, &container, &id, pod_ip, timing.timeout, runtime.as_ref()).await;
        if let Some(passing) = tracker.record(&outcome) {
            let message = match &outcome {
                Outcome::Success => String::new(),
                Outcome::Failure(message) => message.clone(),
            };
            let verdict =
                ProbeVerdict { container: container.name.clone(), id: id.clone(), kind, passing, message };
            if verdicts.send(verdict).await.is_err() {
                return;
            }
            if kind == ProbeKind::Startup && passing {
                return;
            }
        }
        if verdicts.is_closed() {
            return;
        }
    }
}

/// Runs a probe once.
pub async fn probe_once<R: Runtime>(
    probe: &Probe,
    container: &Container,
    id: &ContainerId,
    pod_ip: IpAddr,
    timeout: Duration,
    runtime: &R,
) -> Outcome {
    if let Some(exec) = &probe.exec {
        let argv = exec.command.clone().unwrap_or_default();
        return match runtime.exec(id, &argv, timeout).await {
            Ok(output) => match output.exit_code {
                Some(0) => Outcome::Success,
                Some(_) => Outcome::Failure(String::from_utf8_lossy(&output.output).trim_end().to_owned()),
                None => Outcome::Failure(format!("command {argv:?} timed out")),
            },
            Err(error) => Outcome::Failure(error.to_string()),
        };
    }
    if let Some(http) = &probe.http_get {
        let Some(port) = resolve_port(&http.port, container) else {
            return Outcome::Failure(format!("unknown port {:?}", http.port));
        };
        let host = http.host.as_deref().and_then(|host| host.parse().ok()).unwrap_or(pod_ip);
        if http.scheme.as_deref().is_some_and(|scheme| scheme.eq_ignore_ascii_case("HTTPS")) {
            return Outcome::Failure("HTTPS probes are not supported by this agent".into());
        }
        let path = http.path.as_deref().unwrap_or("/");
        let headers: Vec<(String, String)> = http
            .http_headers
            .iter()
            .flatten()
            .map(|header| (header.name.clone(), header.value.clone()))
            .collect();
        return http_get(SocketAddr::new(host, port), path, &headers, timeout).await;
    }
    if let Some(tcp) = &probe.tcp_socket {
        let Some(port) = resolve_port(&tcp.port, container) else {
            return Outcome::Failure(format!("unknown port {:?}", tcp.port));
        };
        let host = tcp.host.as_deref().and_then(|host| host.parse().ok()).unwrap_or(pod_ip);
        let address = SocketAddr::new(host, port);
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => Outcome::Success,
            Ok(Err(error)) => Outcome::Failure(format!("dial tcp {address}: connect: {error}")),
            Err(_) => Outcome::Failure(format!("dial tcp {address}: i/o timeout")),
        };
    }
    if probe.grpc.is_some() {
        return Outcome::Failure("gRPC probes are not supported by this agent".into());
    }
    Outcome::Failure("the probe names no handler".into())
}

/// A probe's port: a number, or the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(number) => u16::try_from(*number).ok().filter(|number| *number > 0),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|port| port.name.as_deref() == Some(name))
            .and_then(|port| u16::try_from(port.container_port).ok()),
    }
}

/// An HTTP GET whose status decides: 200 to 399 passes, as in Kubernetes.
async fn http_get(
    address: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Outcome {
    let url = format!("http://{address}{path}");
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|error| format!("Get {url:?}: dial tcp {address}: connect: {error}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|error| format!("Get {url:?}: {error}"))?;
        tokio::spawn(connection);
        let mut request = http::Request::get(path)
            .header(http::header::HOST, address.to_string())
            .header(http::header::USER_AGENT, "kube-probe/1.33 (shoal)");
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|error| format!("Get {url:?}: {error}"))?;
        let response = sender.send_request(request).await.map_err(|error| format!("Get {url:?}: {error}"))?;
        Ok::<_, String>(response.status().as_u16())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(status)) if (200..400).contains(&status) => Outcome::Success,
        Ok(Ok(status)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {status}")),
        Ok(Err(message)) => Outcome::Failure(message),
        Err(_) => Outcome::Failure(format!(
            "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(success: u32, failure: u32) -> Timing {
        Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    // The verdict flips only after `threshold` outcomes in a row; a lone success or failure in
    // between resets the count.
    #[test]
    fn thresholds() {
        let fail = Outcome::Failure("no".into());
        let mut tracker = Tracker::new(timing(2, 3));
        let outcomes = [
            &Outcome::Success,
            &fail,
            &Outcome::Success,
            &Outcome::Success,
            &fail,
            &fail,
            &Outcome::Success,
            &fail,
            &fail,
            &fail,
        ];
        let verdicts: Vec<Option<bool>> = outcomes.iter().map(|outcome| tracker.record(outcome)).collect();
        assert_eq!(verdicts, [None, None, None, Some(true), None, None, None, None, None, Some(false)]);
    }

    // Defaults are Kubernetes'; zero or negative periods and thresholds are raised to their minimum.
    #[test]
    fn timing_defaults() {
        assert_eq!(
            Timing::of(&Probe::default()),
            Timing {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
            }
        );
        let odd = Probe {
            period_seconds: Some(0),
            failure_threshold: Some(-1),
            initial_delay_seconds: Some(-5),
            ..Probe::default()
        };
        let timing = Timing::of(&odd);
        assert_eq!(
            (timing.period, timing.failure_threshold, timing.initial_delay),
            (Duration::from_secs(1), 1, Duration::ZERO)
        );
    }

    // Ports resolve by number or by the container's port names.
    #[test]
    fn ports() {
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "web", "ports": [{"name": "http", "containerPort": 8080}]
        }))
        .unwrap();
        assert_eq!(resolve_port(&IntOrString::Int(80), &container), Some(80));
        assert_eq!(resolve_port(&IntOrString::String("http".into()), &container), Some(8080));
        assert_eq!(resolve_port(&IntOrString::String("grpc".into()), &container), None);
        assert_eq!(resolve_port(&IntOrString::Int(0), &container), None);
        assert_eq!(resolve_port(&IntOrString::Int(70000), &container), None);
    }

    // HTTP and TCP probes against a real listener: 2xx/3xx pass, 5xx and refused connections fail
    // with Kubernetes' wording.
    #[tokio::test]
    async fn http_and_tcp() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                    let mut buffer = vec![0u8; 4096];
                    let read = stream.read(&mut buffer).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buffer[..read]).to_string();
                    let status = if request.starts_with("GET /healthz") {
                        "200 OK"
                    } else {
                        "500 Internal Server Error"
                    };
                    let response =
                        format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        let timeout = Duration::from_secs(5);
        assert_eq!(http_get(address, "/healthz", &[], timeout).await, Outcome::Success);
        assert_eq!(
            http_get(address, "/broken", &[], timeout).await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let Outcome::Failure(message) = http_get(closed, "/", &[], timeout).await else {
            panic!("a closed port passed")
        };
        assert!(message.contains("connect"), "{message}");
    }
}
