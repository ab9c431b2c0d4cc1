//! The autoscaler's decisions: proposals from metrics, the conservative handling of pods
//! without metrics or not ready, stabilization windows and rate policies over time, and the
//! status, conditions and events that say what happened.

use serde_json::json;

use super::*;

/// The time the tests start at; pods started an hour before.
fn at(seconds: i64) -> Timestamp {
    "2025-01-01T12:00:00Z".parse::<Timestamp>().expect("a timestamp") + SignedDuration::from_secs(seconds)
}

/// An HPA on Deployment `web`: 1 to 10 replicas, cpu at 50 % of requests, `spec` merged in.
fn hpa(spec: serde_json::Value) -> HorizontalPodAutoscaler {
    let mut base = json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-hpa"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 1, "maxReplicas": 10,
                 "metrics": [{"type": "Resource",
                              "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]},
    });
    for (key, value) in spec.as_object().expect("an object") {
        base["spec"][key] = value.clone();
    }
    serde_json::from_value(base).expect("a valid HPA")
}

/// A running pod requesting 100m cpu and 64Mi memory, started an hour before `at(0)` and Ready
/// (or not) since.
fn pod(name: &str, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": "host",
                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
        "status": {"phase": "Running", "startTime": "2025-01-01T11:00:00Z",
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                                   "lastTransitionTime": "2025-01-01T11:00:10Z"}]},
    }))
    .expect("a valid pod")
}

/// A pod's metrics at `at(0)` over a 15 s window: `cpu` millicores and `memory_mi` MiB.
fn usage(name: &str, cpu: i64, memory_mi: i64) -> PodUsage {
    let resources =
        BTreeMap::from([("cpu".to_owned(), cpu), ("memory".to_owned(), memory_mi * 1024 * 1024 * 1000)]);
    PodUsage {
        pod: name.to_owned(),
        timestamp: at(0),
        window: SignedDuration::from_secs(15),
        containers: BTreeMap::from([("main".to_owned(), resources)]),
    }
}

fn observed(replicas: i32, pods: Vec<Pod>, metrics: Vec<PodUsage>) -> Observed {
    Observed {
        scale: Ok(Scale { replicas, selector: "app=web".into() }),
        pods: Ok(pods),
        metrics: Ok(metrics),
    }
}

/// `count` ready pods each using `cpu` millicores.
fn loaded(replicas: i32, count: usize, cpu: i64) -> Observed {
    let names: Vec<String> = (0..count).map(|i| format!("web-{i}")).collect();
    observed(
        replicas,
        names.iter().map(|name| pod(name, true)).collect(),
        names.iter().map(|name| usage(name, cpu, 10)).collect(),
    )
}

fn condition(plan: &Plan, type_: &str) -> (String, String, String) {
    let condition = plan
        .status
        .conditions
        .iter()
        .flatten()
        .find(|condition| condition.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", plan.status));
    (
        condition.status.clone(),
        condition.reason.clone().unwrap_or_default(),
        condition.message.clone().unwrap_or_default(),
    )
}

fn desired(plan: &Plan) -> Option<i32> {
    plan.rescale.as_ref().map(|rescale| rescale.to)
}

// Two pods at 100 % of their request against a 50 % target: ratio 2, four replicas. The
// status reports the metric (what `kubectl get hpa` shows as "cpu: 100%/50%"), the conditions
// and the event say why, and a successful write is recorded.
#[test]
fn scales_up_on_cpu_utilization() {
    let hpa = hpa(json!({}));
    let mut history = History::default();
    let mut plan = decide(&hpa, &loaded(2, 2, 100), &mut history, &Config::default(), at(0));
    assert_eq!(
        plan.rescale,
        Some(Rescale {
            from: 2,
            to: 4,
            reason: "cpu resource utilization (percentage of request) above target".into()
        })
    );
    plan.rescale_succeeded(&mut history, &hpa);
    assert_eq!(
        serde_json::to_value(&plan.status.current_metrics).unwrap(),
        json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 100, "averageValue": "100m"}}}])
    );
    assert_eq!((plan.status.current_replicas, plan.status.desired_replicas), (Some(2), 4));
    assert_eq!(plan.status.last_scale_time, Some(Time(at(0))));
    assert_eq!(
        condition(&plan, "AbleToScale"),
        (
            "True".into(),
            "SucceededRescale".into(),
            "the HPA controller was able to update the target scale to 4".into()
        )
    );
    assert_eq!(
        condition(&plan, "ScalingActive"),
        (
            "True".into(),
            "ValidMetricFound".into(),
            "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)".into()
        )
    );
    assert_eq!(condition(&plan, "ScalingLimited").1, "DesiredWithinRange");
    assert_eq!(
        plan.events,
        [Event {
            warning: false,
            reason: "SuccessfulRescale".into(),
            message: "New size: 4; reason: cpu resource utilization (percentage of request) above target"
                .into()
        }]
    );
    let conditions: Vec<&str> =
        plan.status.conditions.iter().flatten().map(|condition| condition.type_.as_str()).collect();
    assert_eq!(conditions, ["AbleToScale", "ScalingActive", "ScalingLimited"]);
}

// Within the 0.1 tolerance nothing changes (54 % and 46 % of a 50 % target); just beyond it
// (56 %) it does, rounding up.
#[test]
fn tolerance() {
    let hpa = hpa(json!({}));
    for (cpu, expected) in [(54, None), (46, None), (56, Some(3))] {
        let plan = decide(&hpa, &loaded(2, 2, cpu), &mut History::default(), &Config::default(), at(0));
        assert_eq!(desired(&plan), expected, "{cpu}m");
        assert_eq!(plan.status.desired_replicas, expected.unwrap_or(2));
    }
}

// The default scale-up policy allows max(4 pods, 100 %) per 15 s: one pod at 20× the target
// goes to 5, then waits out the period, then doubles; maxReplicas caps it with its own reason.
#[test]
fn scale_up_rate_and_max_replicas() {
    let hpa = hpa(json!({"maxReplicas": 30}));
    let config = Config::default();
    let mut history = History::default();
    let mut plan = decide(&hpa, &loaded(1, 1, 1_000), &mut history, &config, at(0));
    assert_eq!(desired(&plan), Some(5));
    assert_eq!(condition(&plan, "ScalingLimited").0, "True");
    assert_eq!(condition(&plan, "ScalingLimited").1, "ScaleUpLimit");
    plan.rescale_succeeded(&mut history, &hpa);

    let plan = decide(&hpa, &loaded(5, 5, 1_000), &mut history, &config, at(5));
    assert_eq!(desired(&plan), None, "still within the period of the last scale-up");
    let mut plan = decide(&hpa, &loaded(5, 5, 1_000), &mut history, &config, at(16));
    assert_eq!(desired(&plan), Some(10));
    plan.rescale_succeeded(&mut history, &hpa);

    let capped = hpa_with_max(3);
    let plan = decide(&capped, &loaded(2, 2, 1_000), &mut History::default(), &config, at(0));
    assert_eq!(desired(&plan), Some(3));
    assert_eq!(condition(&plan, "ScalingLimited").1, "TooManyReplicas");
}

fn hpa_with_max(max: i32) -> HorizontalPodAutoscaler {
    hpa(json!({"maxReplicas": max}))
}

// Scale-down waits for the 300 s window: the highest recommendation within it wins, so a load
// that drops is followed only once the window has passed; then it goes down at once (100 %
// per 15 s), not below minReplicas.
#[test]
fn scale_down_stabilization_window() {
    let hpa = hpa(json!({"minReplicas": 2}));
    let config = Config::default();
    let mut history = History::default();
    let plan = decide(&hpa, &loaded(6, 6, 100), &mut history, &config, at(0));
    assert_eq!(desired(&plan), Some(10), "12 capped by maxReplicas, first the recommendation 12 is kept");
    for seconds in [15, 150, 299] {
        let plan = decide(&hpa, &loaded(6, 6, 10), &mut history, &config, at(seconds));
        assert_eq!(desired(&plan), None, "at {seconds} s");
        assert_eq!(condition(&plan, "AbleToScale").1, "ScaleDownStabilized");
    }
    let plan = decide(&hpa, &loaded(6, 6, 10), &mut history, &config, at(301));
    assert_eq!(desired(&plan), Some(2));
    assert_eq!(plan.rescale.as_ref().unwrap().reason, "All metrics below target");
    assert_eq!(condition(&plan, "ScalingLimited").1, "DesiredWithinRange");
    let no_window = Config { downscale_stabilization: Duration::ZERO, ..Config::default() };
    let plan = decide(&hpa, &loaded(6, 6, 1), &mut History::default(), &no_window, at(0));
    assert_eq!(desired(&plan), Some(2), "1 % would be one replica");
    assert_eq!(condition(&plan, "ScalingLimited").1, "TooFewReplicas");
}

// A behavior of the HPA's own replaces the defaults: no scale-down window, at most one pod
// per minute down; a scale-up window keeps the lowest recommendation of its span.
#[test]
fn behavior_of_the_hpas_own() {
    let hpa = hpa(json!({"behavior": {
        "scaleDown": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
        "scaleUp": {"stabilizationWindowSeconds": 60},
    }}));
    let config = Config::default();
    let mut history = History::default();
    let mut plan = decide(&hpa, &loaded(4, 4, 10), &mut history, &config, at(0));
    assert_eq!(desired(&plan), Some(3));
    assert_eq!(condition(&plan, "ScalingLimited").1, "ScaleDownLimit");
    plan.rescale_succeeded(&mut history, &hpa);
    let plan = decide(&hpa, &loaded(3, 3, 10), &mut history, &config, at(30));
    assert_eq!(desired(&plan), None, "one pod per minute");

    let mut history = History::default();
    let plan = decide(&hpa, &loaded(2, 2, 100), &mut history, &config, at(0));
    assert_eq!(desired(&plan), None, "the initial recommendation (2) is within the scale-up window");
    assert_eq!(condition(&plan, "AbleToScale").1, "ScaleUpStabilized");
    let plan = decide(&hpa, &loaded(2, 2, 100), &mut history, &config, at(61));
    assert_eq!(desired(&plan), Some(4));
}

// Pods without metrics are counted as using their whole request against a scale-down, so an
// idle pod next to one without metrics does not scale down; and as using nothing against a
// scale-up.
#[test]
fn pods_without_metrics_are_counted_conservatively() {
    let hpa = hpa(json!({}));
    let config = Config::default();
    let down = observed(2, vec![pod("a", true), pod("b", true)], vec![usage("a", 10, 10)]);
    let plan = decide(&hpa, &down, &mut History::default(), &config, at(0));
    assert_eq!(desired(&plan), None);

    let up = observed(2, vec![pod("a", true), pod("b", true)], vec![usage("a", 200, 10)]);
    let plan = decide(&hpa, &up, &mut History::default(), &config, at(0));
    // a: 200 %, b: 0 % → 100 % of requests, ratio 2 over 2 pods.
    assert_eq!(desired(&plan), Some(4));
}

// An unready pod's CPU sample is set aside (it would say 500 %); a pod within its CPU
// initialization period whose readiness is more recent than a metrics window, and a pending
// pod, are too; pods being deleted or failed are ignored altogether.
#[test]
fn unready_and_starting_pods_are_set_aside() {
    let hpa = hpa(json!({}));
    let config = Config { downscale_stabilization: Duration::ZERO, ..Config::default() };
    let mut starting = pod("starting", true);
    let status = starting.status.as_mut().unwrap();
    status.start_time = Some(Time(at(-20)));
    status.conditions.as_mut().unwrap()[0].last_transition_time = Some(Time(at(-5)));
    let mut pending = pod("pending", false);
    pending.status.as_mut().unwrap().phase = Some("Pending".into());
    let mut deleting = pod("deleting", true);
    deleting.metadata.deletion_timestamp = Some(Time(at(0)));
    let mut failed = pod("failed", true);
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    let pods = vec![pod("a", true), pod("unready", false), starting, pending, deleting, failed];
    let metrics = ["unready", "starting", "deleting", "failed"].map(|name| usage(name, 500, 10));
    let mut metrics = metrics.to_vec();
    metrics.push(usage("a", 20, 10));
    let plan = decide(&hpa, &observed(6, pods, metrics), &mut History::default(), &config, at(0));
    // Only a counts: 20 % of 50 % → ceil(0.4 × 1) = 1.
    assert_eq!(desired(&plan), Some(1));
    assert_eq!(
        plan.status.current_metrics.as_ref().unwrap()[0]
            .resource
            .as_ref()
            .unwrap()
            .current
            .average_utilization,
        Some(20)
    );
}

// AverageValue targets compare the average usage itself: memory 60Mi a pod against 30Mi.
#[test]
fn average_value_of_memory() {
    let hpa = hpa(json!({"metrics": [{"type": "Resource",
        "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "30Mi"}}}]}));
    let names = ["a", "b"];
    let observed = observed(
        2,
        names.iter().map(|name| pod(name, true)).collect(),
        names.iter().map(|name| usage(name, 10, 60)).collect(),
    );
    let plan = decide(&hpa, &observed, &mut History::default(), &Config::default(), at(0));
    assert_eq!(plan.rescale, Some(Rescale { from: 2, to: 4, reason: "memory resource above target".into() }));
    let current = &plan.status.current_metrics.as_ref().unwrap()[0].resource.as_ref().unwrap().current;
    assert_eq!(current.average_value, Some(Quantity("62914560".into())));
    assert_eq!(current.average_utilization, None);
}

// Of two metrics the higher proposal wins; when one fails and the other would scale down,
// nothing happens and ScalingActive says why, with upstream's words.
#[test]
fn several_metrics_and_failing_ones() {
    let two = json!([
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 50}}},
    ]);
    let hpa = hpa(json!({"metrics": two}));
    // cpu 100 % → 4; memory 10/64 = 15 % → 1.
    let plan = decide(&hpa, &loaded(2, 2, 100), &mut History::default(), &Config::default(), at(0));
    assert_eq!(desired(&plan), Some(4));

    let with_pods_metric = hpa_with_metrics(json!([
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
        {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1"}}},
    ]));
    let plan =
        decide(&with_pods_metric, &loaded(4, 4, 10), &mut History::default(), &Config::default(), at(0));
    assert_eq!(desired(&plan), None);
    assert_eq!(condition(&plan, "ScalingActive").1, "FailedGetPodsMetric");
    assert!(plan.events.iter().any(|event| event.reason == "FailedComputeMetricsReplicas"
        && event.message.starts_with(
            "invalid metrics (1 invalid out of 2), first error is: failed to get pods metric value"
        )));
    let types: Vec<&str> =
        plan.status.current_metrics.iter().flatten().map(|status| status.type_.as_str()).collect();
    assert_eq!(types, ["Resource", ""], "a failed metric reports an empty status, as upstream's");
}

fn hpa_with_metrics(metrics: serde_json::Value) -> HorizontalPodAutoscaler {
    hpa(json!({"metrics": metrics}))
}

// Failures, each with upstream's condition and event: the scale cannot be read; the metrics
// API fails; the scale has no selector; a pod has no request. None of them rescales.
#[test]
fn failures_are_reported() {
    let hpa = hpa(json!({}));
    let config = Config::default();
    let check = |observed: Observed, type_: &str, reason: &str, message: &str, event: (&str, &str)| {
        let plan = decide(&hpa, &observed, &mut History::default(), &config, at(0));
        assert_eq!(plan.rescale, None);
        assert_eq!(condition(&plan, type_), ("False".into(), reason.into(), message.into()));
        assert!(
            plan.events.iter().any(|e| e.warning && e.reason == event.0 && e.message == event.1),
            "{:?}",
            plan.events
        );
    };
    check(
        Observed { scale: Err("deployments.apps \"web\" not found".into()), ..loaded(1, 1, 10) },
        "AbleToScale",
        "FailedGetScale",
        "the HPA controller was unable to get the target's current scale: deployments.apps \"web\" not found",
        ("FailedGetScale", "deployments.apps \"web\" not found"),
    );
    check(
        Observed { metrics: Err("the server is unavailable".into()), ..loaded(1, 1, 10) },
        "ScalingActive",
        "FailedGetResourceMetric",
        "the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server is unavailable",
        (
            "FailedComputeMetricsReplicas",
            "invalid metrics (1 invalid out of 1), first error is: failed to get cpu resource metric value: failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server is unavailable",
        ),
    );
    check(
        Observed { scale: Ok(Scale { replicas: 1, selector: String::new() }), ..loaded(1, 1, 10) },
        "ScalingActive",
        "InvalidSelector",
        "the HPA target's scale is missing a selector",
        ("SelectorRequired", "selector is required"),
    );
    let mut no_request = pod("web-0", true);
    no_request.spec.as_mut().unwrap().containers[0].resources = None;
    check(
        observed(1, vec![no_request], vec![usage("web-0", 10, 10)]),
        "ScalingActive",
        "FailedGetResourceMetric",
        "the HPA was unable to compute the replica count: failed to get cpu utilization: missing request for cpu in container main of Pod web-0",
        (
            "FailedGetResourceMetric",
            "failed to get cpu utilization: missing request for cpu in container main of Pod web-0",
        ),
    );
}

// A target scaled to zero disables autoscaling; one outside min/max is brought within them
// without looking at metrics.
#[test]
fn zero_replicas_and_out_of_range_targets() {
    let hpa = hpa(json!({"minReplicas": 2, "maxReplicas": 5}));
    let config = Config::default();
    let plan = decide(&hpa, &loaded(0, 0, 10), &mut History::default(), &config, at(0));
    assert_eq!(desired(&plan), None);
    assert_eq!(condition(&plan, "ScalingActive").1, "ScalingDisabled");
    let plan = decide(&hpa, &loaded(8, 0, 10), &mut History::default(), &config, at(0));
    assert_eq!(
        plan.rescale.as_ref().map(|r| (r.to, r.reason.as_str())),
        Some((5, "Current number of replicas above Spec.MaxReplicas"))
    );
    let plan = decide(&hpa, &loaded(1, 0, 10), &mut History::default(), &config, at(0));
    assert_eq!(
        plan.rescale.as_ref().map(|r| (r.to, r.reason.as_str())),
        Some((2, "Current number of replicas below Spec.MinReplicas"))
    );
}

// A rescale the API refuses leaves the desired count and last scale time as they were, and
// says so in AbleToScale and a FailedRescale event; no scale event is recorded, so the rate
// limit does not count it.
#[test]
fn failed_rescale() {
    let hpa = hpa(json!({}));
    let mut history = History::default();
    let mut plan = decide(&hpa, &loaded(2, 2, 100), &mut history, &Config::default(), at(0));
    plan.rescale_failed("the object has been modified");
    assert_eq!(plan.status.desired_replicas, 0);
    assert_eq!(plan.status.last_scale_time, None);
    assert_eq!(condition(&plan, "AbleToScale").1, "FailedUpdateScale");
    assert_eq!(
        plan.events[0].message,
        "New size: 4; reason: cpu resource utilization (percentage of request) above target; error: the object has been modified"
    );
    assert!(history.scale_up_events.is_empty());
}

// A condition's transition time moves only when its status does.
#[test]
fn condition_transition_times() {
    let hpa = hpa(json!({}));
    let mut history = History::default();
    let first = decide(&hpa, &loaded(2, 2, 50), &mut history, &Config::default(), at(0));
    let mut again = hpa.clone();
    again.status = Some(first.status.clone());
    let second = decide(&again, &loaded(2, 2, 50), &mut history, &Config::default(), at(30));
    assert_eq!(first.status, second.status, "nothing changed, so nothing to write");
}

// PodMetrics items as the API serves them, and Go durations.
#[test]
fn metrics_items_and_durations() {
    let item: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
        "metadata": {"name": "web-0", "namespace": "default"},
        "timestamp": "2025-01-01T12:00:00Z", "window": "1.002s",
        "containers": [{"name": "main", "usage": {"cpu": "12345678n", "memory": "2048Ki"}}],
    }))
    .unwrap();
    let usage = runtime::pod_usage(&item).expect("a readable item");
    assert_eq!(usage.pod, "web-0");
    assert_eq!(usage.window, SignedDuration::from_millis(1_002));
    assert_eq!(usage.containers["main"]["cpu"], 13);
    assert_eq!(usage.containers["main"]["memory"], 2048 * 1024 * 1000);
    for (text, expected) in
        [("15s", Some(15_000)), ("1m30s", Some(90_000)), ("500ms", Some(500)), ("0", Some(0)), ("x", None)]
    {
        assert_eq!(runtime::go_duration(text).map(|d| d.as_millis()), expected.map(i128::from), "{text}");
    }
}
