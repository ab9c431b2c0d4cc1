//! The horizontal pod autoscaler (autoscaling/v2): sets a Deployment's or ReplicaSet's
//! replicas, through its scale subresource, from its pods' CPU and memory usage as the
//! metrics API (metrics.k8s.io PodMetrics) reports it, with Kubernetes' algorithm.
//!
//! Every [`Config::sync_period`] the runtime reads each HPA's target scale, the pods its
//! selector picks and their metrics, and [`decide`] computes, as upstream's
//! `reconcileAutoscaler` does:
//! - per metric (`Resource` or `ContainerResource`, cpu or memory, by `Utilization` of the
//!   pods' requests or by `AverageValue`) a proposal `ceil(ready pods × usage / target)`, or
//!   the current count when the ratio is within [`Config::tolerance`] of 1. Pods being deleted
//!   or failed are ignored; pending pods, and for CPU pods not yet ready or too freshly
//!   started for a full metrics window, are counted only against a scale-up as using nothing;
//!   pods without metrics count as using nothing on a scale-up and their full request (or
//!   the target) on a scale-down; a proposal that these assumptions turn around is dropped.
//!   The highest proposal wins; if some metric fails and the rest would scale down, nothing
//!   happens.
//! - the proposal stabilized over the behavior's windows (the lowest recommendation of the
//!   scale-up window, the highest of the scale-down window, each recommendation kept in
//!   [`History`]) and limited by its policies (pods or percent per period, against the scale
//!   events in [`History`]) and by min/maxReplicas. An HPA without `behavior` gets Kubernetes'
//!   default behavior: scale up by max(4 pods, 100 %) per 15 s at once, scale down by 100 %
//!   per 15 s after a 300 s window.
//! - the status (currentReplicas, desiredReplicas, currentMetrics, lastScaleTime) and the
//!   conditions AbleToScale, ScalingActive and ScalingLimited with upstream's reasons and
//!   messages, and the events (SuccessfulRescale, FailedGetScale, FailedGetResourceMetric, …).
//!
//! Time is an input, so the windows are tested without waiting.

mod runtime;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus, MetricSpec, MetricStatus, MetricTarget,
    MetricValueStatus, ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::quantity;

pub use runtime::run;

/// How often each HPA is looked at, upstream's `--horizontal-pod-autoscaler-sync-period`.
pub const SYNC_PERIOD: Duration = Duration::from_secs(15);
/// A usage ratio this close to 1 changes nothing.
pub const TOLERANCE: f64 = 0.1;
/// How long after a pod's start its CPU samples are suspect unless it has been ready for a
/// whole metrics window (`--horizontal-pod-autoscaler-cpu-initialization-period`).
pub const CPU_INITIALIZATION_PERIOD: Duration = Duration::from_secs(300);
/// A pod that turned unready within this long of its start is taken as never ready yet
/// (`--horizontal-pod-autoscaler-initial-readiness-delay`).
pub const INITIAL_READINESS_DELAY: Duration = Duration::from_secs(30);
/// The default scale-down stabilization window
/// (`--horizontal-pod-autoscaler-downscale-stabilization`).
pub const DOWNSCALE_STABILIZATION: Duration = Duration::from_secs(300);
/// The period of the default scaling policies.
const DEFAULT_POLICY_PERIOD_SECONDS: i32 = 15;
/// Recommendations and scale events remembered per HPA at most; older entries are reused
/// first, so this only bounds a history made of many windows' worth of distinct entries.
const HISTORY_ENTRIES_MAX: usize = 1_000;

/// The autoscaler's settings; tests shorten the sync period.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub sync_period: Duration,
    pub tolerance: f64,
    pub cpu_initialization_period: Duration,
    pub initial_readiness_delay: Duration,
    pub downscale_stabilization: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            sync_period: SYNC_PERIOD,
            tolerance: TOLERANCE,
            cpu_initialization_period: CPU_INITIALIZATION_PERIOD,
            initial_readiness_delay: INITIAL_READINESS_DELAY,
            downscale_stabilization: DOWNSCALE_STABILIZATION,
        }
    }
}

/// The target's scale subresource as read.
#[derive(Clone, Debug, PartialEq)]
pub struct Scale {
    pub replicas: i32,
    /// `status.selector`, a label selector in its string form.
    pub selector: String,
}

/// One pod's usage as the metrics API reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct PodUsage {
    pub pod: String,
    /// The end of the window the usage was measured over.
    pub timestamp: Timestamp,
    pub window: SignedDuration,
    /// Per container, per resource, the usage in thousandths (millicores, millibytes).
    pub containers: BTreeMap<String, BTreeMap<String, i64>>,
}

/// What the runtime read for one pass over one HPA.
#[derive(Clone, Debug)]
pub struct Observed {
    /// The target's scale, or why it could not be read.
    pub scale: Result<Scale, String>,
    /// The pods the scale's selector picks, or why they could not be listed.
    pub pods: Result<Vec<Pod>, String>,
    /// The metrics of the pods the selector picks, or why they could not be read.
    pub metrics: Result<Vec<PodUsage>, String>,
}

/// What one HPA's past passes left for the next: recent recommendations and scale events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    recommendations: Vec<Recommendation>,
    scale_up_events: Vec<ScaleEvent>,
    scale_down_events: Vec<ScaleEvent>,
}

#[derive(Clone, Debug, PartialEq)]
struct Recommendation {
    replicas: i32,
    time: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
struct ScaleEvent {
    change: i32,
    time: Timestamp,
    /// Older than every policy period: free to be replaced.
    outdated: bool,
}

/// An event about the HPA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

impl Event {
    fn warning(reason: &str, message: impl Into<String>) -> Self {
        Self { warning: true, reason: reason.to_owned(), message: message.into() }
    }
}

/// A change of the target's replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rescale {
    pub from: i32,
    pub to: i32,
    /// Why, as the event says it: "cpu resource utilization (percentage of request) above
    /// target".
    pub reason: String,
}

/// What a pass decided: an optional rescale, the status to write, and events.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub rescale: Option<Rescale>,
    /// The HPA's status after the pass, the rescale (if any) assumed to succeed: call
    /// [`Plan::rescale_succeeded`] or [`Plan::rescale_failed`] once it is known.
    pub status: HorizontalPodAutoscalerStatus,
    pub events: Vec<Event>,
    /// The status as it was, for a failed rescale.
    previous: HorizontalPodAutoscalerStatus,
    now: Timestamp,
}

impl Plan {
    /// Records the rescale in `history` and in the status, with its event.
    pub fn rescale_succeeded(&mut self, history: &mut History, hpa: &HorizontalPodAutoscaler) {
        let Some(rescale) = self.rescale.clone() else { return };
        let message = format!("the HPA controller was able to update the target scale to {}", rescale.to);
        set_condition(&mut self.status, self.now, "AbleToScale", true, "SucceededRescale", message);
        self.events.push(Event {
            warning: false,
            reason: "SuccessfulRescale".to_owned(),
            message: format!("New size: {}; reason: {}", rescale.to, rescale.reason),
        });
        history.record_scale_event(&behavior(hpa, &Config::default()), rescale.from, rescale.to, self.now);
    }

    /// Turns the status into that of a rescale that failed with `error`.
    pub fn rescale_failed(&mut self, error: &str) {
        let Some(rescale) = self.rescale.clone() else { return };
        self.events.push(Event::warning(
            "FailedRescale",
            format!("New size: {}; reason: {}; error: {error}", rescale.to, rescale.reason),
        ));
        let message = format!("the HPA controller was unable to update the target scale: {error}");
        set_condition(&mut self.status, self.now, "AbleToScale", false, "FailedUpdateScale", message);
        self.status.desired_replicas = self.previous.desired_replicas;
        self.status.last_scale_time = self.previous.last_scale_time.clone();
    }
}

/// Decides one pass over `hpa` at `now` from what was `observed`, updating `history`.
pub fn decide(
    hpa: &HorizontalPodAutoscaler,
    observed: &Observed,
    history: &mut History,
    config: &Config,
    now: Timestamp,
) -> Plan {
    let previous = hpa.status.clone().unwrap_or_default();
    let mut plan =
        Plan { rescale: None, status: previous.clone(), events: Vec::new(), previous: previous.clone(), now };
    let status = &mut plan.status;
    let scale = match &observed.scale {
        Ok(scale) => scale,
        Err(error) => {
            plan.events.push(Event::warning("FailedGetScale", error.clone()));
            let message = format!("the HPA controller was unable to get the target's current scale: {error}");
            set_condition(status, now, "AbleToScale", false, "FailedGetScale", message);
            return plan;
        }
    };
    let message = "the HPA controller was able to get the target's current scale";
    set_condition(status, now, "AbleToScale", true, "SucceededGetScale", message);
    let spec = hpa.spec.clone().unwrap_or_default();
    let current = scale.replicas;
    history.record_initial(current, now);
    let min_replicas = spec.min_replicas.unwrap_or(1);
    let mut metric_statuses = None;
    let (desired, reason) = if current == 0 && min_replicas != 0 {
        let message = "scaling is disabled since the replica count of the target is zero";
        set_condition(status, now, "ScalingActive", false, "ScalingDisabled", message);
        (current, String::new())
    } else if current > spec.max_replicas {
        (spec.max_replicas, "Current number of replicas above Spec.MaxReplicas".to_owned())
    } else if current < min_replicas {
        (min_replicas, "Current number of replicas below Spec.MinReplicas".to_owned())
    } else {
        let metrics = spec.metrics.clone().unwrap_or_default();
        let computed = replicas_for_metrics(&metrics, scale, observed, config, now, status, &mut plan.events);
        metric_statuses = Some(computed.statuses);
        let Some((proposal, metric)) = computed.proposal else {
            status.current_replicas = Some(current);
            status.current_metrics = metric_statuses.filter(|statuses| !statuses.is_empty());
            plan.events
                .push(Event::warning("FailedComputeMetricsReplicas", computed.error.unwrap_or_default()));
            return plan;
        };
        let reason = match proposal.cmp(&current) {
            std::cmp::Ordering::Greater => format!("{metric} above target"),
            std::cmp::Ordering::Less => "All metrics below target".to_owned(),
            std::cmp::Ordering::Equal => String::new(),
        };
        let rules = behavior(hpa, config);
        let limits = Limits { min: min_replicas, max: spec.max_replicas, current };
        (normalize(history, &rules, limits, proposal, now, status), reason)
    };
    status.current_replicas = Some(current);
    status.current_metrics = metric_statuses.filter(|statuses| !statuses.is_empty());
    if desired != current && !(current == 0 && min_replicas != 0) {
        status.desired_replicas = desired;
        status.last_scale_time = Some(Time(now));
        plan.rescale = Some(Rescale { from: current, to: desired, reason });
    } else {
        status.desired_replicas = current;
    }
    plan
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// The outcome over every metric.
struct Computed {
    /// The highest proposal and the metric that made it; None when the HPA cannot scale on
    /// its metrics this pass.
    proposal: Option<(i32, String)>,
    statuses: Vec<MetricStatus>,
    /// What to report when there is no proposal.
    error: Option<String>,
}

/// A metric that could not be computed: the condition reason and the error.
struct MetricError {
    reason: &'static str,
    /// The error as the condition and the metric's event word it.
    inner: String,
    /// The error as the pass reports it.
    outer: String,
}

/// Upstream's `computeReplicasForMetrics`.
fn replicas_for_metrics(
    metrics: &[MetricSpec],
    scale: &Scale,
    observed: &Observed,
    config: &Config,
    now: Timestamp,
    status: &mut HorizontalPodAutoscalerStatus,
    events: &mut Vec<Event>,
) -> Computed {
    if scale.selector.is_empty() {
        events.push(Event::warning("SelectorRequired", "selector is required"));
        let message = "the HPA target's scale is missing a selector";
        set_condition(status, now, "ScalingActive", false, "InvalidSelector", message);
        return Computed {
            proposal: None,
            statuses: Vec::new(),
            error: Some("selector is required".to_owned()),
        };
    }
    let mut statuses = Vec::with_capacity(metrics.len());
    let mut best: Option<(i32, String)> = None;
    let mut first_error: Option<MetricError> = None;
    let mut invalid = 0;
    for metric in metrics {
        match replicas_for_metric(metric, scale.replicas, observed, config, now) {
            Ok((proposal, name, metric_status)) => {
                statuses.push(metric_status);
                if best.as_ref().is_none_or(|(replicas, _)| proposal > *replicas) {
                    best = Some((proposal, name));
                }
            }
            Err(error) => {
                statuses.push(MetricStatus { type_: String::new(), ..MetricStatus::default() });
                events.push(Event::warning(error.reason, error.inner.clone()));
                invalid += 1;
                first_error.get_or_insert(error);
            }
        }
    }
    let would_scale_down = best.as_ref().is_none_or(|(replicas, _)| *replicas < scale.replicas);
    if let Some(error) = first_error.filter(|_| invalid >= metrics.len() || would_scale_down) {
        let message = format!("the HPA was unable to compute the replica count: {}", error.inner);
        set_condition(status, now, "ScalingActive", false, error.reason, message);
        let error = format!(
            "invalid metrics ({invalid} invalid out of {}), first error is: {}",
            metrics.len(),
            error.outer
        );
        return Computed { proposal: None, statuses, error: Some(error) };
    }
    let Some((replicas, name)) = best else {
        // No metrics at all (the API server defaults one, so only a hand-made object).
        let error = "invalid metrics (0 invalid out of 0), first error is: no metrics".to_owned();
        return Computed { proposal: None, statuses, error: Some(error) };
    };
    let message = format!("the HPA was able to successfully calculate a replica count from {name}");
    set_condition(status, now, "ScalingActive", true, "ValidMetricFound", message);
    Computed { proposal: Some((replicas, name)), statuses, error: None }
}

/// One metric's proposal, the name events give it, and its status.
fn replicas_for_metric(
    metric: &MetricSpec,
    current: i32,
    observed: &Observed,
    config: &Config,
    now: Timestamp,
) -> Result<(i32, String, MetricStatus), MetricError> {
    let (resource, container, target) = match metric.type_.as_str() {
        "Resource" => match &metric.resource {
            Some(source) => (source.name.as_str(), None, &source.target),
            None => return Err(invalid_spec(metric, "resource")),
        },
        "ContainerResource" => match &metric.container_resource {
            Some(source) => (source.name.as_str(), Some(source.container.as_str()), &source.target),
            None => return Err(invalid_spec(metric, "containerResource")),
        },
        "Pods" | "Object" | "External" => {
            let inner = format!(
                "unable to get {} metric: no custom or external metrics API is served",
                metric.type_.to_lowercase()
            );
            let outer = format!("failed to get {} metric value: {inner}", metric.type_.to_lowercase());
            let reason = match metric.type_.as_str() {
                "Pods" => "FailedGetPodsMetric",
                "Object" => "FailedGetObjectMetric",
                _ => "FailedGetExternalMetric",
            };
            return Err(MetricError { reason, inner: inner.clone(), outer });
        }
        other => {
            let inner = format!("unknown metric source type {other:?}");
            return Err(MetricError {
                reason: "InvalidMetricSourceType",
                inner: inner.clone(),
                outer: inner,
            });
        }
    };
    let (replicas, value, name) =
        resource_replicas(resource, container, target, current, observed, config, now).map_err(|inner| {
            MetricError {
                reason: if container.is_some() {
                    "FailedGetContainerResourceMetric"
                } else {
                    "FailedGetResourceMetric"
                },
                outer: format!(
                    "failed to get {resource} {}metric value: {inner}",
                    if container.is_some() { "container resource " } else { "resource " }
                ),
                inner,
            }
        })?;
    let status = match container {
        None => MetricStatus {
            type_: "Resource".to_owned(),
            resource: Some(ResourceMetricStatus { name: resource.to_owned(), current: value }),
            ..MetricStatus::default()
        },
        Some(container) => MetricStatus {
            type_: "ContainerResource".to_owned(),
            container_resource: Some(ContainerResourceMetricStatus {
                name: resource.to_owned(),
                container: container.to_owned(),
                current: value,
            }),
            ..MetricStatus::default()
        },
    };
    Ok((replicas, name, status))
}

fn invalid_spec(metric: &MetricSpec, field: &str) -> MetricError {
    let inner = format!("invalid metric source: type {} without {field}", metric.type_);
    MetricError { reason: "InvalidMetricSourceType", inner: inner.clone(), outer: inner }
}

/// Upstream's `computeStatusForResourceMetricGeneric`: the proposal for one resource, its
/// current value, and the metric's name; or the error, worded as upstream's.
fn resource_replicas(
    resource: &str,
    container: Option<&str>,
    target: &MetricTarget,
    current: i32,
    observed: &Observed,
    config: &Config,
    now: Timestamp,
) -> Result<(i32, MetricValueStatus, String), String> {
    let container_word = if container.is_some() { "container " } else { "" };
    if let Some(average) = &target.average_value {
        let target_milli = quantity::milli_value(&average.0).filter(|milli| *milli > 0).ok_or_else(|| {
            format!("failed to get {resource} usage: invalid target average value {:?}", average.0)
        })?;
        let (replicas, usage) =
            raw_replicas(resource, container, target_milli, current, observed, config, now)
                .map_err(|error| format!("failed to get {resource} usage: {error}"))?;
        let value = MetricValueStatus {
            average_value: Some(Quantity(quantity::format_milli(usage))),
            ..MetricValueStatus::default()
        };
        return Ok((replicas, value, format!("{resource} {container_word}resource")));
    }
    let Some(target_utilization) = target.average_utilization.filter(|target| *target > 0) else {
        return Err("invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".to_owned());
    };
    let (replicas, utilization, raw) =
        utilization_replicas(resource, container, target_utilization, current, observed, config, now)
            .map_err(|error| format!("failed to get {resource} utilization: {error}"))?;
    let value = MetricValueStatus {
        average_utilization: Some(utilization),
        average_value: Some(Quantity(quantity::format_milli(raw))),
        ..MetricValueStatus::default()
    };
    Ok((replicas, value, format!("{resource} {container_word}resource utilization (percentage of request)")))
}

/// Per pod, the usage of `resource` (summed over the containers, or of `container`), for the
/// pods whose every container reports it (upstream's `getPodMetrics`).
fn pod_metrics(
    resource: &str,
    container: Option<&str>,
    observed: &Observed,
) -> Result<BTreeMap<String, (i64, Timestamp, SignedDuration)>, String> {
    let usages = observed
        .metrics
        .as_ref()
        .map_err(|error| format!("unable to get metrics for resource {resource}: unable to fetch metrics from resource metrics API: {error}"))?;
    if usages.is_empty() {
        return Err(format!(
            "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        ));
    }
    let mut metrics = BTreeMap::new();
    for usage in usages {
        let sum = match container {
            Some(container) => {
                usage.containers.get(container).and_then(|resources| resources.get(resource)).copied()
            }
            None if usage.containers.is_empty() => None,
            None => usage
                .containers
                .values()
                .map(|resources| resources.get(resource).copied())
                .sum::<Option<i64>>(),
        };
        if let Some(sum) = sum {
            metrics.insert(usage.pod.clone(), (sum, usage.timestamp, usage.window));
        }
    }
    if metrics.is_empty() && container.is_some() {
        return Err(format!(
            "unable to get metrics for resource {resource}: failed to get container metrics: container {} not present in metrics for pods",
            container.unwrap_or_default()
        ));
    }
    Ok(metrics)
}

/// Per pod, its usage in thousandths.
type Usage = BTreeMap<String, i64>;

/// The pods partitioned as upstream's `groupPods` does.
#[derive(Default)]
struct Groups {
    ready: usize,
    unready: BTreeSet<String>,
    missing: BTreeSet<String>,
    ignored: BTreeSet<String>,
}

fn group_pods(
    pods: &[Pod],
    metrics: &BTreeMap<String, (i64, Timestamp, SignedDuration)>,
    resource: &str,
    config: &Config,
    now: Timestamp,
) -> Groups {
    let mut groups = Groups::default();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        let phase = status.phase.as_deref();
        if pod.metadata.deletion_timestamp.is_some() || matches!(phase, Some("Failed" | "Succeeded")) {
            groups.ignored.insert(name);
            continue;
        }
        if phase == Some("Pending") {
            groups.unready.insert(name);
            continue;
        }
        let Some((_, timestamp, window)) = metrics.get(&name) else {
            groups.missing.insert(name);
            continue;
        };
        if resource == "cpu" && cpu_sample_unready(&status, *timestamp, *window, config, now) {
            groups.unready.insert(name);
            continue;
        }
        groups.ready += 1;
    }
    groups
}

/// Whether a running pod's CPU sample is to be set aside: no Ready condition or start time;
/// within the initialization period, unready or not ready for a whole window before the
/// sample; after it, unready without ever having been ready.
fn cpu_sample_unready(
    status: &k8s_openapi::api::core::v1::PodStatus,
    timestamp: Timestamp,
    window: SignedDuration,
    config: &Config,
    now: Timestamp,
) -> bool {
    let condition = status.conditions.iter().flatten().find(|condition| condition.type_ == "Ready");
    let (Some(condition), Some(start)) = (condition, status.start_time.as_ref()) else { return true };
    let transition = condition.last_transition_time.as_ref().map_or(Timestamp::UNIX_EPOCH, |time| time.0);
    let not_ready = condition.status == "False";
    let after =
        |duration: Duration| start.0 + SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX);
    if after(config.cpu_initialization_period) > now {
        not_ready || timestamp < transition + window
    } else {
        not_ready && after(config.initial_readiness_delay) > transition
    }
}

/// Per pod, the sum of the requests of `resource` of its containers (or of `container`),
/// restartable init containers included; an error names a container without one.
fn pod_requests(
    pods: &[Pod],
    resource: &str,
    container: Option<&str>,
) -> Result<BTreeMap<String, i64>, String> {
    let mut requests = BTreeMap::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let sidecars =
            spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let mut sum = 0_i64;
        for each in spec.containers.iter().chain(sidecars) {
            if container.is_some_and(|container| container != each.name) {
                continue;
            }
            let request =
                each.resources.as_ref().and_then(|resources| resources.requests.as_ref()?.get(resource));
            let Some(milli) = request.and_then(|request| quantity::milli_value(&request.0)) else {
                return Err(format!(
                    "missing request for {resource} in container {} of Pod {name}",
                    each.name
                ));
            };
            sum = sum.saturating_add(milli);
        }
        requests.insert(name, sum);
    }
    Ok(requests)
}

/// The pods the selector picks, or upstream's error for none.
fn selected_pods(observed: &Observed) -> Result<&[Pod], String> {
    let pods = observed
        .pods
        .as_ref()
        .map_err(|error| format!("unable to get pods while calculating replica count: {error}"))?;
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".to_owned());
    }
    Ok(pods)
}

/// The selected pods, grouped, and the usage of those whose metrics count (not ignored, not
/// unready); upstream's error when none does.
fn counted_usage<'a>(
    resource: &str,
    container: Option<&str>,
    observed: &'a Observed,
    config: &Config,
    now: Timestamp,
) -> Result<(&'a [Pod], Groups, Usage), String> {
    let metrics = pod_metrics(resource, container, observed)?;
    let pods = selected_pods(observed)?;
    let groups = group_pods(pods, &metrics, resource, config, now);
    let usage: BTreeMap<String, i64> = metrics
        .iter()
        .filter(|(pod, _)| !groups.ignored.contains(*pod) && !groups.unready.contains(*pod))
        .map(|(pod, (value, _, _))| (pod.clone(), *value))
        .collect();
    if usage.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".to_owned());
    }
    Ok((pods, groups, usage))
}

/// Upstream's `GetResourceReplicas`: the proposal by utilization of the requests, the
/// current utilization (percent) and the average usage.
fn utilization_replicas(
    resource: &str,
    container: Option<&str>,
    target: i32,
    current: i32,
    observed: &Observed,
    config: &Config,
    now: Timestamp,
) -> Result<(i32, i32, i64), String> {
    let (pods, groups, mut usage) = counted_usage(resource, container, observed, config, now)?;
    let requests = pod_requests(pods, resource, container)?;
    let ratio = |usage: &BTreeMap<String, i64>| utilization_ratio(usage, &requests, target);
    let (usage_ratio, utilization, raw) = ratio(&usage)?;
    let fallback = |pod: &str| requests.get(pod).copied().unwrap_or(0) * i64::from(target.max(100)) / 100;
    let replicas =
        calculate(&groups, &mut usage, usage_ratio, current, config.tolerance, fallback, |usage| {
            ratio(usage).map(|(ratio, _, _)| ratio)
        })?;
    Ok((replicas, utilization, raw))
}

/// Upstream's `GetResourceUtilizationRatio`: over the pods with both usage and requests, the
/// usage ratio to the target, the utilization in percent, and the average usage.
fn utilization_ratio(
    usage: &BTreeMap<String, i64>,
    requests: &BTreeMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), String> {
    let (mut total_usage, mut total_requests, mut entries) = (0_i64, 0_i64, 0_i64);
    for (pod, value) in usage {
        let Some(request) = requests.get(pod) else { continue };
        total_usage = total_usage.saturating_add(*value);
        total_requests = total_requests.saturating_add(*request);
        entries += 1;
    }
    if total_requests == 0 {
        return Err("no metrics returned matched known pods".to_owned());
    }
    let utilization = i32::try_from(total_usage.saturating_mul(100) / total_requests).unwrap_or(i32::MAX);
    Ok((f64::from(utilization) / f64::from(target), utilization, total_usage / entries))
}

/// Upstream's `GetRawResourceReplicas`: the proposal by average usage, and that average.
fn raw_replicas(
    resource: &str,
    container: Option<&str>,
    target: i64,
    current: i32,
    observed: &Observed,
    config: &Config,
    now: Timestamp,
) -> Result<(i32, i64), String> {
    let (_, groups, mut usage) = counted_usage(resource, container, observed, config, now)?;
    let average = |usage: &BTreeMap<String, i64>| {
        let total: i64 = usage.values().fold(0, |total, value| total.saturating_add(*value));
        total / i64::try_from(usage.len()).unwrap_or(i64::MAX)
    };
    let ratio = |usage: &BTreeMap<String, i64>| Ok(average(usage) as f64 / target as f64);
    let usage_ratio = ratio(&usage)?;
    let raw = average(&usage);
    let replicas = calculate(&groups, &mut usage, usage_ratio, current, config.tolerance, |_| target, ratio)?;
    Ok((replicas, raw))
}

/// The part both calculations share: with no unready pods to count against a scale-up and
/// no missing metrics, `ceil(ratio × ready pods)` unless within tolerance; otherwise the
/// ratio again with missing pods at `fallback` (scale-down) or 0 (scale-up) and unready pods
/// at 0 (scale-up), the current count where that flips the direction or lands within
/// tolerance.
fn calculate(
    groups: &Groups,
    usage: &mut BTreeMap<String, i64>,
    usage_ratio: f64,
    current: i32,
    tolerance: f64,
    fallback: impl Fn(&str) -> i64,
    ratio: impl Fn(&BTreeMap<String, i64>) -> Result<f64, String>,
) -> Result<i32, String> {
    let scale_up_with_unready = !groups.unready.is_empty() && usage_ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if (1.0 - usage_ratio).abs() <= tolerance {
            return Ok(current);
        }
        return Ok(ceil_replicas(usage_ratio * groups.ready as f64));
    }
    if usage_ratio < 1.0 {
        usage.extend(groups.missing.iter().map(|pod| (pod.clone(), fallback(pod))));
    } else if usage_ratio > 1.0 {
        usage.extend(groups.missing.iter().map(|pod| (pod.clone(), 0)));
    }
    if scale_up_with_unready {
        usage.extend(groups.unready.iter().map(|pod| (pod.clone(), 0)));
    }
    let new_ratio = ratio(usage)?;
    let flips = (usage_ratio < 1.0 && new_ratio > 1.0) || (usage_ratio > 1.0 && new_ratio < 1.0);
    if (1.0 - new_ratio).abs() <= tolerance || flips {
        return Ok(current);
    }
    let replicas = ceil_replicas(new_ratio * usage.len() as f64);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(current);
    }
    Ok(replicas)
}

fn ceil_replicas(value: f64) -> i32 {
    // `as` saturates: an absurd ratio gives i32::MAX, which maxReplicas then limits.
    value.ceil() as i32
}

// ---------------------------------------------------------------------------------------------
// Behavior

/// The bounds a recommendation is brought within.
#[derive(Clone, Copy, Debug)]
struct Limits {
    min: i32,
    max: i32,
    current: i32,
}

/// Both directions' rules, defaults filled in as the API server and the controller fill them.
#[derive(Clone, Debug, PartialEq)]
pub struct Behavior {
    pub scale_up: Rules,
    pub scale_down: Rules,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub stabilization_window_seconds: i32,
    /// `Max`, `Min` or `Disabled`.
    pub select_policy: String,
    pub policies: Vec<HPAScalingPolicy>,
}

/// The HPA's behavior with every unset part defaulted: scale-up without a window, by
/// max(4 pods, 100 %) per 15 s; scale-down after `config.downscale_stabilization`, by 100 %
/// per 15 s.
pub fn behavior(hpa: &HorizontalPodAutoscaler, config: &Config) -> Behavior {
    let spec = hpa.spec.as_ref().and_then(|spec| spec.behavior.as_ref());
    let policy = |type_: &str, value: i32| HPAScalingPolicy {
        type_: type_.to_owned(),
        value,
        period_seconds: DEFAULT_POLICY_PERIOD_SECONDS,
    };
    let rules = |given: Option<&HPAScalingRules>, window: i32, policies: Vec<HPAScalingPolicy>| Rules {
        stabilization_window_seconds: given
            .and_then(|rules| rules.stabilization_window_seconds)
            .unwrap_or(window),
        select_policy: given
            .and_then(|rules| rules.select_policy.clone())
            .unwrap_or_else(|| "Max".to_owned()),
        policies: given.and_then(|rules| rules.policies.clone()).unwrap_or(policies),
    };
    let down_window = i32::try_from(config.downscale_stabilization.as_secs()).unwrap_or(i32::MAX);
    Behavior {
        scale_up: rules(
            spec.and_then(|behavior| behavior.scale_up.as_ref()),
            0,
            vec![policy("Pods", 4), policy("Percent", 100)],
        ),
        scale_down: rules(
            spec.and_then(|behavior| behavior.scale_down.as_ref()),
            down_window,
            vec![policy("Percent", 100)],
        ),
    }
}

/// Upstream's `normalizeDesiredReplicasWithBehaviors`: stabilizes `proposal`, then limits it
/// by the policies and min/max, setting AbleToScale and ScalingLimited.
fn normalize(
    history: &mut History,
    behavior: &Behavior,
    limits: Limits,
    proposal: i32,
    now: Timestamp,
    status: &mut HorizontalPodAutoscalerStatus,
) -> i32 {
    let stabilized = history.stabilize(behavior, limits.current, proposal, now);
    if stabilized != proposal {
        let (reason, message) = if proposal >= limits.current {
            (
                "ScaleUpStabilized",
                "recent recommendations were lower than current one, applying the lowest recent recommendation",
            )
        } else {
            (
                "ScaleDownStabilized",
                "recent recommendations were higher than current one, applying the highest recent recommendation",
            )
        };
        set_condition(status, now, "AbleToScale", true, reason, message);
    } else {
        set_condition(
            status,
            now,
            "AbleToScale",
            true,
            "ReadyForNewScale",
            "recommended size matches current size",
        );
    }
    let (desired, reason, message) = history.limit_by_rate(behavior, limits, stabilized, now);
    set_condition(status, now, "ScalingLimited", desired != stabilized, reason, message);
    desired
}

impl History {
    fn record_initial(&mut self, current: i32, now: Timestamp) {
        if self.recommendations.is_empty() {
            self.recommendations.push(Recommendation { replicas: current, time: now });
        }
    }

    /// Upstream's `stabilizeRecommendationWithBehaviors`: the recommendation brought within
    /// the lowest of the scale-up window and the highest of the scale-down window, starting
    /// from the current count; records `proposal`.
    fn stabilize(&mut self, behavior: &Behavior, current: i32, proposal: i32, now: Timestamp) -> i32 {
        let cutoff = |seconds: i32| now - SignedDuration::from_secs(i64::from(seconds));
        let up_cutoff = cutoff(behavior.scale_up.stabilization_window_seconds);
        let down_cutoff = cutoff(behavior.scale_down.stabilization_window_seconds);
        let (mut up, mut down) = (proposal, proposal);
        let mut old = None;
        for (index, recommendation) in self.recommendations.iter().enumerate() {
            if recommendation.time > up_cutoff {
                up = up.min(recommendation.replicas);
            }
            if recommendation.time > down_cutoff {
                down = down.max(recommendation.replicas);
            }
            if recommendation.time < up_cutoff && recommendation.time < down_cutoff {
                old = Some(index);
            }
        }
        let recommendation = current.max(up).min(down);
        let entry = Recommendation { replicas: proposal, time: now };
        match old {
            Some(index) => self.recommendations[index] = entry,
            None if self.recommendations.len() >= HISTORY_ENTRIES_MAX => {
                let oldest =
                    (0..self.recommendations.len()).min_by_key(|index| self.recommendations[*index].time);
                self.recommendations[oldest.expect("a full history")] = entry;
            }
            None => self.recommendations.push(entry),
        }
        recommendation
    }

    /// Upstream's `convertDesiredReplicasWithBehaviorRate`: `desired` limited by the policies
    /// against the scale events of their periods, and by min/max; with ScalingLimited's
    /// reason and message.
    fn limit_by_rate(
        &self,
        behavior: &Behavior,
        limits: Limits,
        desired: i32,
        now: Timestamp,
    ) -> (i32, &'static str, &'static str) {
        let current = limits.current;
        if desired > current {
            let limit = self.policy_limit(&behavior.scale_up, true, current, now).max(current);
            if limits.max > limit {
                if desired > limit {
                    return (
                        limit,
                        "ScaleUpLimit",
                        "the desired replica count is increasing faster than the maximum scale rate",
                    );
                }
            } else if desired > limits.max {
                return (
                    limits.max,
                    "TooManyReplicas",
                    "the desired replica count is more than the maximum replica count",
                );
            }
        } else if desired < current {
            let limit = self.policy_limit(&behavior.scale_down, false, current, now).min(current);
            if limits.min < limit {
                if desired < limit {
                    return (
                        limit,
                        "ScaleDownLimit",
                        "the desired replica count is decreasing faster than the maximum scale rate",
                    );
                }
            } else if desired < limits.min {
                return (
                    limits.min,
                    "TooFewReplicas",
                    "the desired replica count is less than the minimum replica count",
                );
            }
        }
        (desired, "DesiredWithinRange", "the desired count is within the acceptable range")
    }

    /// The replicas at the start of `period_seconds`: the current count less the scale-ups and
    /// plus the scale-downs within it.
    fn period_start(&self, current: i32, period_seconds: i32, now: Timestamp) -> i32 {
        let cutoff = now - SignedDuration::from_secs(i64::from(period_seconds));
        let within = |events: &[ScaleEvent]| -> i32 {
            events.iter().filter(|event| event.time > cutoff).map(|event| event.change).sum()
        };
        current - within(&self.scale_up_events) + within(&self.scale_down_events)
    }

    /// Upstream's `calculateScaleUpLimitWithScalingRules` and
    /// `calculateScaleDownLimitWithBehaviors`: the furthest the policies let the count go in
    /// one direction from where each policy's period started. `Max` takes the policy allowing
    /// the most change, `Min` the least.
    fn policy_limit(&self, rules: &Rules, up: bool, current: i32, now: Timestamp) -> i32 {
        if rules.select_policy == "Disabled" {
            return current;
        }
        let proposals = rules.policies.iter().map(|policy| {
            let start = self.period_start(current, policy.period_seconds, now);
            let percent = f64::from(policy.value) / 100.0;
            match (policy.type_.as_str(), up) {
                ("Pods", true) => start.saturating_add(policy.value),
                ("Pods", false) => start.saturating_sub(policy.value),
                // Rounded up, or a small count could never grow.
                (_, true) => ceil_replicas(f64::from(start) * (1.0 + percent)),
                (_, false) => (f64::from(start) * (1.0 - percent)) as i32,
            }
        });
        if up == (rules.select_policy != "Min") {
            proposals.max().unwrap_or(if up { i32::MIN } else { i32::MAX })
        } else {
            proposals.min().unwrap_or(if up { i32::MAX } else { i32::MIN })
        }
    }

    /// Upstream's `storeScaleEvent`: remembers a change from `from` to `to`, reusing an entry
    /// older than every policy period of its direction.
    fn record_scale_event(&mut self, behavior: &Behavior, from: i32, to: i32, now: Timestamp) {
        let (events, rules, change) = if to > from {
            (&mut self.scale_up_events, &behavior.scale_up, to - from)
        } else {
            (&mut self.scale_down_events, &behavior.scale_down, from - to)
        };
        let longest = rules.policies.iter().map(|policy| policy.period_seconds).max().unwrap_or(0);
        let cutoff = now - SignedDuration::from_secs(i64::from(longest));
        for event in events.iter_mut() {
            event.outdated |= event.time <= cutoff;
        }
        let entry = ScaleEvent { change, time: now, outdated: false };
        match events.iter().position(|event| event.outdated) {
            Some(index) => events[index] = entry,
            None if events.len() >= HISTORY_ENTRIES_MAX => events[0] = entry,
            None => events.push(entry),
        }
    }
}

/// Upstream's `setCondition`: updates (or appends) the condition of `type_`, its transition
/// time moving only when its status does.
fn set_condition(
    status: &mut HorizontalPodAutoscalerStatus,
    now: Timestamp,
    type_: &str,
    value: bool,
    reason: &str,
    message: impl Into<String>,
) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let index = match conditions.iter().position(|condition| condition.type_ == type_) {
        Some(index) => index,
        None => {
            conditions
                .push(HorizontalPodAutoscalerCondition { type_: type_.to_owned(), ..Default::default() });
            conditions.len() - 1
        }
    };
    let condition = &mut conditions[index];
    let value = if value { "True" } else { "False" };
    if condition.status != value {
        condition.last_transition_time = Some(Time(now));
    }
    condition.status = value.to_owned();
    condition.reason = Some(reason.to_owned());
    condition.message = Some(message.into());
}
